// Warden dashboard: draws the events of /v1/events (one JSON document a
// second) into the page. No framework: small DOM helpers, charts drawn as
// SVG by the functions under "chart math", which the tests call through
// window.warden. Every string from a log line is hostile: it only ever
// reaches the page as text (textContent), never as markup.
'use strict';

(() => {
  const W = (window.warden = {});

  // ---- numbers and times -------------------------------------------------

  W.fmtInt = (n) => (n == null || !isFinite(n) ? '–' : Math.round(n).toLocaleString('en-US'));

  W.fmtNum = (n) => {
    if (n == null || !isFinite(n)) return '–';
    if (Math.abs(n) >= 100) return W.fmtInt(n);
    if (Math.abs(n) >= 10) return n.toFixed(1);
    return n.toFixed(2);
  };

  W.fmtBytes = (b) => {
    if (b == null || !isFinite(b)) return '–';
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
    let i = 0;
    while (Math.abs(b) >= 1024 && i < units.length - 1) {
      b /= 1024;
      i++;
    }
    return (i === 0 ? String(Math.round(b)) : b.toFixed(Math.abs(b) < 10 ? 2 : 1)) + ' ' + units[i];
  };

  W.fmtPct = (r) => {
    if (r == null || !isFinite(r)) return '–';
    const p = r * 100;
    if (p === 0) return '0%';
    if (p < 0.01) return '<0.01%';
    return p.toFixed(p < 10 ? 2 : 1) + '%';
  };

  W.fmtMs = (ms) => {
    if (ms == null || !isFinite(ms)) return '–';
    if (ms >= 1000) return (ms / 1000).toFixed(2) + ' s';
    return ms.toFixed(ms < 10 ? 2 : ms < 100 ? 1 : 0) + ' ms';
  };

  // plural is "1 alert", "2 alerts".
  W.plural = (n, word) => W.fmtInt(n) + ' ' + word + (n === 1 ? '' : 's');

  // fmtPair shows two durations in one unit when they share it: "41 / 94 ms".
  W.fmtPair = (a, b) => {
    const x = W.fmtMs(a), y = W.fmtMs(b);
    const ux = x.split(' ')[1], uy = y.split(' ')[1];
    return ux === uy ? x.split(' ')[0] + ' / ' + y : x + ' / ' + y;
  };

  W.fmtDuration = (s) => {
    if (s == null || !isFinite(s)) return '–';
    s = Math.max(0, Math.round(s));
    const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60), x = s % 60;
    if (d) return d + 'd ' + h + 'h';
    if (h) return h + 'h ' + m + 'm';
    if (m) return m + 'm ' + x + 's';
    return x + 's';
  };

  // fmtTime renders Unix seconds in UTC: "HH:MM", or "MM-DD HH:MM".
  W.fmtTime = (unix, withDate) => {
    const iso = new Date(unix * 1000).toISOString();
    return withDate ? iso.slice(5, 10) + ' ' + iso.slice(11, 16) : iso.slice(11, 16);
  };

  W.fmtStep = (s) => (s % 3600 === 0 ? s / 3600 + ' h' : s / 60 + ' min');

  // ---- chart math --------------------------------------------------------

  // niceTicks covers [0, max] with about count steps of 1, 2 or 5 times a
  // power of ten, the one nearest max / count on a log scale (at least 1
  // for integers):
  // {max, ticks}.
  W.niceTicks = (max, count, integer) => {
    if (!(max > 0)) return { max: 1, ticks: [0, 1] };
    const raw = max / Math.max(1, count);
    const p = Math.pow(10, Math.floor(Math.log10(raw)));
    const f = raw / p;
    let step = (f < 1.41 ? 1 : f < 3.16 ? 2 : f < 7.07 ? 5 : 10) * p;
    if (integer) step = Math.max(1, Math.round(step));
    const n = Math.ceil(max / step - 1e-9);
    const ticks = [];
    for (let i = 0; i <= n; i++) ticks.push(+(i * step).toPrecision(12));
    return { max: ticks[ticks.length - 1], ticks };
  };

  // axisTicks is niceTicks in the unit that suits max, with labels:
  // kind 'count' (whole numbers), 'bytes' (binary units) or 'ms'.
  W.axisTicks = (max, count, kind) => {
    let unit = 1, name = '';
    if (kind === 'bytes') {
      const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
      const k = max >= 1024 ? Math.min(units.length - 1, Math.floor(Math.log(max) / Math.log(1024))) : 0;
      unit = Math.pow(1024, k);
      name = ' ' + units[k];
    } else if (kind === 'ms') {
      if (max >= 1000) [unit, name] = [1000, ' s'];
      else name = ' ms';
    }
    const t = W.niceTicks(max / unit, count, kind === 'count');
    return { max: t.max * unit, ticks: t.ticks.map((v) => v * unit),
      labels: t.ticks.map((v) => (kind === 'count' ? W.fmtInt(v) : String(+v.toPrecision(3))) + name) };
  };

  const timeSteps = [60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800];

  // timeTicks puts at most count round times in [t0, t1] (Unix seconds):
  // [{t, label}], the date shown when the span passes a day.
  W.timeTicks = (t0, t1, count) => {
    const span = t1 - t0;
    if (!(span > 0)) return [];
    const step = timeSteps.find((s) => span / s <= count) || Math.ceil(span / count / 86400) * 86400;
    const out = [];
    let lastDay = '';
    for (let t = Math.ceil(t0 / step) * step; t <= t1; t += step) {
      const day = new Date(t * 1000).toISOString().slice(0, 10);
      const withDate = span > 86400 && day !== lastDay;
      out.push({ t, label: step >= 86400 ? day.slice(5) : W.fmtTime(t, withDate) });
      lastDay = day;
    }
    return out;
  };

  // stack piles the columns (arrays of one length) up: [{lower, upper}].
  W.stack = (columns) => {
    const n = columns.length ? columns[0].length : 0;
    let base = new Array(n).fill(0);
    return columns.map((c) => {
      const upper = base.map((b, i) => b + (c[i] || 0));
      const layer = { lower: base, upper };
      base = upper;
      return layer;
    });
  };

  const r1 = (v) => Math.round(v * 10) / 10;

  // stepArea is the path of a band between lower and upper where value i
  // holds from x(i) to x(i+1): buckets drawn as what they are, flat tops.
  W.stepArea = (lower, upper, x, y) => {
    const n = upper.length;
    if (!n) return '';
    const top = [];
    for (let i = 0; i < n; i++) top.push(r1(x(i)) + ',' + r1(y(upper[i])), r1(x(i + 1)) + ',' + r1(y(upper[i])));
    const bottom = [];
    for (let i = n - 1; i >= 0; i--) bottom.push(r1(x(i + 1)) + ',' + r1(y(lower[i])), r1(x(i)) + ',' + r1(y(lower[i])));
    return 'M' + top.join('L') + 'L' + bottom.join('L') + 'Z';
  };

  // stepLine is the top edge of stepArea: flat over each bucket.
  W.stepLine = (values, x, y) => {
    const pts = [];
    values.forEach((v, i) => pts.push(r1(x(i)) + ',' + r1(y(v || 0)), r1(x(i + 1)) + ',' + r1(y(v || 0))));
    return pts.length ? 'M' + pts.join('L') : '';
  };

  // linePath joins the points at the buckets' middles; null values break
  // the line, a lone point becomes a short dash.
  W.linePath = (values, x, y) => {
    let d = '';
    let run = [];
    const flush = () => {
      if (run.length === 1) run.push([run[0][0] + 2, run[0][1]]);
      if (run.length) d += 'M' + run.map((p) => r1(p[0]) + ',' + r1(p[1])).join('L');
      run = [];
    };
    values.forEach((v, i) => {
      if (v == null || !isFinite(v)) return flush();
      run.push([x(i + 0.5), y(v)]);
    });
    flush();
    return d;
  };

  // maxOf is the largest finite value of the arrays (0 when none).
  W.maxOf = (...arrays) => {
    let m = 0;
    for (const a of arrays) for (const v of a || []) if (v != null && isFinite(v) && v > m) m = v;
    return m;
  };

  // sumColumns adds arrays element by element.
  W.sumColumns = (columns, n) => {
    const out = new Array(n).fill(0);
    for (const c of columns) for (let i = 0; i < n; i++) out[i] += c[i] || 0;
    return out;
  };

  // ratios divides element by element (null where the denominator is 0).
  W.ratios = (num, den) => den.map((d, i) => (d ? (num[i] || 0) / d : null));

  // ---- DOM helpers -------------------------------------------------------

  const $ = (id) => document.getElementById(id);
  const SVG = 'http://www.w3.org/2000/svg';

  // h makes an element; strings among the children become text nodes.
  const h = (tag, attrs, ...kids) => {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v == null || v === false) continue;
      if (k === 'text') e.textContent = v;
      else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? '' : v);
    }
    for (const k of kids) if (k != null) e.append(k);
    return e;
  };

  const s = (tag, attrs) => {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) if (v != null) e.setAttribute(k, v);
    return e;
  };

  const setText = (id, v) => {
    const e = $(id);
    if (e && e.textContent !== v) e.textContent = v;
  };

  // ---- charts ------------------------------------------------------------

  const tip = () => $('tip');

  // chart draws series over the event's time grid into the container:
  // spec = {title, kind: 'stack' | 'lines', layers: [{name, cls, values}],
  // fmt, height, empty}.
  const chart = (box, series, spec) => {
    box.replaceChildren();
    box.append(h('div', { class: 'title', text: spec.title }));
    const n = series.requests.length;
    const layers = spec.layers.filter((l) => l.values && l.values.length === n);
    if (!n || !layers.length) {
      box.append(h('div', { class: 'note', text: spec.empty || 'No data in this range.' }));
      return;
    }
    const width = Math.max(260, Math.round(box.clientWidth || 600));
    const height = spec.height || 160;
    const m = { l: 52, r: 8, t: 8, b: 20 };
    const iw = width - m.l - m.r, ih = height - m.t - m.b;
    const stacked = spec.kind === 'stack' ? W.stack(layers.map((l) => l.values)) : null;
    const top = stacked ? W.maxOf(stacked[stacked.length - 1].upper) : W.maxOf(...layers.map((l) => l.values));
    const yt = W.axisTicks(top, height < 140 ? 3 : 4, spec.axis || 'count');
    const x = (i) => m.l + (iw * i) / n;
    const y = (v) => m.t + ih - (ih * v) / yt.max;
    const svg = s('svg', { viewBox: `0 0 ${width} ${height}`, height, role: 'img', 'aria-label': spec.title });
    yt.ticks.forEach((v, i) => {
      svg.append(s('line', { class: 'gridline', x1: m.l, x2: width - m.r, y1: r1(y(v)), y2: r1(y(v)) }));
      const t = s('text', { x: m.l - 6, y: r1(y(v)) + 4, 'text-anchor': 'end' });
      t.textContent = yt.labels[i];
      svg.append(t);
    });
    const t0 = series.start, t1 = series.start + n * series.step;
    for (const tk of W.timeTicks(t0, t1, Math.max(2, Math.floor(iw / 90)))) {
      const tx = m.l + (iw * (tk.t - t0)) / (t1 - t0);
      svg.append(s('line', { class: 'axis', x1: r1(tx), x2: r1(tx), y1: m.t + ih, y2: m.t + ih + 4 }));
      // A label at an edge of the plot stays inside it.
      const anchor = tx > width - m.r - 24 ? 'end' : tx < m.l + 4 ? 'start' : 'middle';
      const t = s('text', { x: r1(Math.min(tx, width - 1)), y: height - 4, 'text-anchor': anchor });
      t.textContent = tk.label;
      svg.append(t);
    }
    layers.forEach((l, k) => {
      if (stacked) svg.append(s('path', { class: 'area ' + l.cls, d: W.stepArea(stacked[k].lower, stacked[k].upper, x, y) }));
      else svg.append(s('path', { class: 'line ' + l.cls, d: W.linePath(l.values, x, y) }));
    });
    for (const o of spec.overlay || []) {
      if (o.values && o.values.length === n) svg.append(s('path', { class: 'line ' + o.cls, d: W.linePath(o.values, x, y) }));
    }
    svg.append(s('line', { class: 'axis', x1: m.l, x2: width - m.r, y1: m.t + ih, y2: m.t + ih }));
    const cursor = s('line', { class: 'cursor', y1: m.t, y2: m.t + ih, visibility: 'hidden' });
    svg.append(cursor);
    const hit = s('rect', { x: m.l, y: m.t, width: iw, height: ih, fill: 'transparent' });
    const all = layers.concat(spec.overlay || []);
    hit.addEventListener('mousemove', (ev) => {
      const r = svg.getBoundingClientRect();
      const i = Math.min(n - 1, Math.max(0, Math.floor(((ev.clientX - r.left) * (width / r.width) - m.l) / (iw / n))));
      const cx = r1(x(i + 0.5));
      cursor.setAttribute('x1', cx);
      cursor.setAttribute('x2', cx);
      cursor.setAttribute('visibility', 'visible');
      const t = series.start + i * series.step;
      const lines = [W.fmtTime(t, true) + ' UTC, ' + W.fmtStep(series.step)];
      for (const l of all) if (l.values[i] != null) lines.push(l.name + ': ' + spec.fmt(l.values[i]));
      const el = tip();
      el.textContent = lines.join('\n');
      el.hidden = false;
      el.style.left = Math.min(window.innerWidth - 220, ev.clientX + 12) + 'px';
      el.style.top = ev.clientY + 12 + 'px';
    });
    hit.addEventListener('mouseleave', () => {
      cursor.setAttribute('visibility', 'hidden');
      tip().hidden = true;
    });
    svg.append(hit);
    box.append(svg);
    box.append(h('div', { class: 'legend' }, ...all.map((l) => h('span', {}, h('i', { class: l.cls }), l.name))));
  };

  // spark draws a small line of values (with the area under it).
  const spark = (svg, values) => {
    svg.replaceChildren();
    const n = values.length;
    if (n < 2) return;
    const width = 120, height = 22;
    svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
    svg.setAttribute('preserveAspectRatio', 'none');
    const top = W.maxOf(values) || 1;
    const x = (i) => (width * i) / n;
    const y = (v) => height - 1 - ((height - 2) * v) / top;
    const zero = new Array(n).fill(0);
    svg.append(s('path', { class: 'area', d: W.stepArea(zero, values.map((v) => v || 0), x, y) }));
    svg.append(s('path', { d: W.stepLine(values, x, y) }));
  };

  // ---- tables ------------------------------------------------------------

  // table keeps a table's rows in step with data, row by row by key, so
  // that a row whose figures change is updated in place (a button in it
  // keeps working) and nothing is rebuilt that did not change.
  // cols: [{head, cls, get(row) -> string | Node, sig(row) -> string}].
  const table = (id, cols, data, key, empty) => {
    const t = $(id);
    if (!t.tHead) {
      t.createTHead().append(h('tr', {}, ...cols.map((c) => h('th', { class: c.cls, text: c.head }))));
    }
    const body = t.tBodies[0];
    const have = new Map();
    for (const tr of Array.from(body.rows)) have.set(tr.dataset.key, tr);
    if (!data.length) {
      body.replaceChildren(h('tr', { 'data-key': '' }, h('td', { class: 'empty', colspan: cols.length, text: empty || 'none' })));
      return;
    }
    have.delete('');
    data.forEach((row, i) => {
      const k = String(key(row));
      let tr = have.get(k);
      if (!tr) tr = h('tr', { 'data-key': k }, ...cols.map((c) => h('td', { class: c.cls })));
      have.delete(k);
      cols.forEach((c, j) => {
        const td = tr.cells[j];
        const sig = c.sig ? c.sig(row) : String(c.get(row));
        if (td.dataset.sig === sig) return;
        td.dataset.sig = sig;
        const v = c.get(row);
        if (v instanceof Node) td.replaceChildren(v);
        else td.textContent = v;
        if (c.title) td.title = c.title(row);
      });
      if (body.rows[i] !== tr) body.insertBefore(tr, body.rows[i] || null);
    });
    for (const tr of have.values()) tr.remove();
    while (body.rows.length > data.length) body.rows[data.length].remove();
  };

  const shareCell = (r) => {
    const pct = Math.max(0, Math.min(100, r.share * 100));
    const bar = h('span', { class: 'barfill' });
    bar.style.width = pct.toFixed(1) + '%';
    return h('span', {}, bar, h('span', { class: 'txt', text: W.fmtPct(r.share) }));
  };

  // searchLink is a link that searches for key (or filters by host).
  const searchLink = (key, param) => {
    const st = Object.assign({}, state, { [param]: key });
    return h('a', { href: '?' + query(st), text: key, title: key, onclick: (e) => { e.preventDefault(); go(st); } });
  };

  const topCols = (head, link, counted) => [
    { head, get: (r) => (link ? searchLink(r.key, link) : r.key), sig: (r) => r.key, title: (r) => r.key },
    { head: counted || 'Requests', cls: 'num', get: (r) => W.fmtInt(r.count) },
    { head: 'Share', cls: 'share', get: shareCell, sig: (r) => W.fmtPct(r.share) },
  ];

  // ---- state in the query string -----------------------------------------

  const params = ['range', 'from', 'to', 'vhost', 'q'];
  let state = {};

  const readState = () => {
    const u = new URLSearchParams(location.search);
    const st = {};
    for (const p of params) if (u.get(p)) st[p] = u.get(p);
    return st;
  };

  const query = (st) => {
    const u = new URLSearchParams();
    for (const p of params) if (st[p]) u.set(p, st[p]);
    return u.toString();
  };

  // go makes st the view: the URL changes (so it can be shared) and the
  // stream restarts with the new filter.
  const go = (st) => {
    state = {};
    for (const p of params) if (st[p]) state[p] = st[p];
    const qs = query(state);
    history.pushState(null, '', qs ? '?' + qs : location.pathname);
    showState();
    connect();
  };

  const showState = () => {
    for (const b of document.querySelectorAll('[data-range]')) {
      const r = b.dataset.range;
      b.classList.toggle('on', r === (state.range || (state.from || state.to ? '' : 'all')));
    }
    for (const p of ['from', 'to', 'vhost', 'q']) $(p).value = state[p] || '';
    setText('filter-error', '');
  };

  // ---- the stream --------------------------------------------------------

  let source = null;
  let lastEvent = 0;
  let last = null;

  const setLive = (on, why) => {
    const e = $('live');
    e.classList.toggle('on', on);
    e.classList.toggle('off', !on);
    setText('live-text', on ? 'live' : why);
  };

  const connect = () => {
    if (source) source.close();
    const qs = query(state);
    source = new EventSource('/v1/events' + (qs ? '?' + qs : ''));
    setLive(false, 'connecting');
    source.addEventListener('update', (e) => {
      lastEvent = Date.now();
      setLive(true);
      last = JSON.parse(e.data);
      render(last);
    });
    source.onerror = () => {
      // EventSource retries by itself while the answer was a stream; a
      // refused request (a bad filter, an expired session) closes it.
      if (source.readyState === EventSource.CLOSED) {
        setLive(false, 'offline');
        diagnose();
      } else setLive(false, 'reconnecting');
    };
  };

  // diagnose asks the stream's URL why it was refused and acts: the login
  // form for an expired session, the message for a bad filter or a node
  // serving too many streams, another try after a pause otherwise.
  const diagnose = async () => {
    const qs = query(state);
    const ac = new AbortController();
    try {
      const r = await fetch('/v1/events' + (qs ? '?' + qs : ''), { signal: ac.signal });
      if (r.status === 401) return location.reload();
      if (r.status === 400 || r.status === 503) {
        const doc = await r.json().catch(() => ({}));
        setText('filter-error', doc.error || r.statusText);
        if (r.status === 400) return;
      }
    } catch (_) {
      /* the node is unreachable: try again below */
    } finally {
      ac.abort();
    }
    setTimeout(() => {
      if (source && source.readyState === EventSource.CLOSED) connect();
    }, 3000);
  };

  // A stream that stays silent (a node stopped with SIGSTOP, a cut
  // network) is not live, even if no error came.
  setInterval(() => {
    if (lastEvent && Date.now() - lastEvent > 3500 && $('live').classList.contains('on')) setLive(false, 'stalled');
  }, 500);

  // ---- rendering ---------------------------------------------------------

  const classes = ['1xx', '2xx', '3xx', '4xx', '5xx', '0xx'];

  const render = (ev) => {
    const f = ev.filter, hd = ev.header, sr = ev.series, cl = ev.cluster;
    setText('node', 'node ' + ev.node);
    $('logout').hidden = !ev.login;
    const span = f.from && f.to ? W.fmtTime(Date.parse(f.from) / 1000, true) + ' – ' + W.fmtTime(Date.parse(f.to) / 1000, true) + ' UTC' : 'no requests yet';
    setText('span', span);
    if (!state.from && !state.to) {
      $('from').placeholder = f.from || '';
      $('to').placeholder = f.to || '';
    }

    // Header.
    setText('requests', W.fmtInt(hd.requests));
    const host = f.vhost ? ' of ' + f.vhost : '';
    const ranges = { all: 'all retained', custom: 'custom range', '5m': 'last 5 min', '1h': 'last hour', '24h': 'last 24 h' };
    setText('requests-sub', (ranges[f.range] || f.range) + host +
      (f.q ? ' · ' + W.fmtInt(hd.matched) + ' matching ' + f.q : '') + ' · ' + W.fmtBytes(hd.bytes));
    const lm = hd.last_minute;
    setText('rps', W.fmtNum(lm.requests_per_s));
    setText('bps', W.fmtBytes(lm.bytes_per_s) + '/s');
    setText('errors', W.fmtPct(hd.error_ratio));
    setText('errors-sub', 'last minute ' + W.fmtPct(lm.error_ratio));
    setText('visitors', W.fmtInt(hd.unique_ips));
    setText('visitors-sub', W.fmtInt(lm.unique_ips) + ' in the last minute');
    setText('latency', hd.latency_ms ? W.fmtPair(hd.latency_ms.p50, hd.latency_ms.p99) : 'not logged');
    setText('latency-sub', lm.latency_ms ? 'last minute ' + W.fmtPair(lm.latency_ms.p50, lm.latency_ms.p99) :
      hd.latency_ms ? 'max ' + W.fmtMs(hd.latency_ms.max) : 'the format has no %D or $request_time');
    setText('malformed', W.fmtInt(hd.malformed));
    setText('malformed-sub', W.fmtInt(hd.expired_requests) + ' requests past retention');
    $('malformed-sub').title = 'requests older than the retention, not in the figures';
    setText('lag', cl.lag_records < 0 ? 'Kafka unreachable' : W.fmtInt(cl.lag_records) + ' records');
    setText('lag-sub', cl.lag_records === 0 ? 'caught up' : cl.lag_seconds == null ? (cl.lag_records < 0 ? '' : 'not reading') : '≈ ' + W.fmtDuration(cl.lag_seconds) + ' to catch up');
    setText('alerts-count', W.fmtInt(ev.security.alerts));
    setText('alerts-sub', W.plural(ev.security.decisions_in_force, 'decision') + ' in force');
    const tail = (a) => a.slice(-60);
    spark($('spark-rps'), tail(sr.requests));
    spark($('spark-bps'), tail(sr.bytes));

    // Traffic.
    const step = W.fmtStep(sr.step || 60);
    chart($('chart-requests'), sr, {
      title: 'Requests per ' + step + ' by status class' + (f.vhost ? ', host ' + f.vhost : ''),
      kind: 'stack', height: 190, fmt: W.fmtInt,
      layers: classes.filter((c) => sr.class[c]).map((c) => ({ name: c, cls: 's' + c, values: sr.class[c] })),
      overlay: sr.matched ? [{ name: 'matching ' + f.q, cls: 'smatch', values: sr.matched }] : [],
    });
    chart($('chart-bytes'), sr, { title: 'Bytes per ' + step, kind: 'stack', fmt: W.fmtBytes, axis: 'bytes',
      layers: [{ name: 'bytes', cls: 'sbytes', values: sr.bytes }] });
    chart($('chart-latency'), sr, { title: 'Latency per ' + step, kind: 'lines', fmt: W.fmtMs, axis: 'ms',
      empty: 'The log format records no response time (%D, %T, $request_time).',
      layers: sr.p50 ? [{ name: 'p50', cls: 'sp50', values: sr.p50 }, { name: 'p90', cls: 'sp90', values: sr.p90 }, { name: 'p99', cls: 'sp99', values: sr.p99 }] : [] });

    // Top lists.
    const t = ev.top;
    setText('tops-note', f.q ? 'paths and clients matching “' + f.q + '”' : '');
    table('top-paths', topCols('Path', 'q'), t.paths, (r) => r.key);
    table('top-404', topCols('Path', 'q'), t.not_found, (r) => r.key);
    table('top-ips', topCols('Client', 'q'), t.ips, (r) => r.key);
    table('top-uas', topCols('User agent'), t.user_agents, (r) => r.key);
    table('top-refs', topCols('Referrer'), t.referrers, (r) => r.key);
    table('top-vhosts', topCols('Host', 'vhost'), t.vhosts, (r) => r.key, 'the log format has no host (%v, $host)');
    table('top-methods', topCols('Method'), t.methods, (r) => r.key);
    table('top-status', topCols('Status'), t.status, (r) => r.key);
    const dl = $('vhosts');
    const hosts = t.vhosts.map((r) => r.key).join('\n');
    if (dl.dataset.sig !== hosts) {
      dl.dataset.sig = hosts;
      dl.replaceChildren(...t.vhosts.map((r) => h('option', { value: r.key })));
    }

    renderSecurity(ev);
    renderCluster(cl);
  };

  const renderSecurity = (ev) => {
    const sec = ev.security, sr = ev.series;
    setText('security-note', W.plural(sec.alerts, 'alert') + ' in range');
    const names = Object.keys(sr.alerts).sort();
    chart($('chart-alerts'), sr, { title: 'Alerts per ' + W.fmtStep(sr.step || 60) + ' by scenario', kind: 'stack', height: 130,
      fmt: W.fmtInt, empty: 'No alert in this range.',
      layers: names.map((k, i) => ({ name: k, cls: 'p' + (i % 8), values: sr.alerts[k] })) });
    table('alerts', [
      { head: 'Event time', cls: 'when', get: (a) => a.time.replace('T', ' ').replace('Z', '') },
      { head: 'Scenario', get: (a) => a.scenario, title: (a) => a.scenario },
      { head: 'Source', get: (a) => searchLink(a.source, 'q'), sig: (a) => a.source },
      { head: 'Events', cls: 'num', get: (a) => W.fmtInt(a.events) },
      { head: 'Sample', cls: 'mono sample', get: (a) => a.sample, title: (a) => a.sample },
    ], sec.latest, (a) => a.id, 'no alert in this range');
    setText('decisions-count', sec.decisions_in_force > sec.decisions.length ?
      '(' + sec.decisions.length + ' of ' + W.fmtInt(sec.decisions_in_force) + ')' : '');
    table('decisions', [
      { head: 'Value', cls: 'mono', get: (d) => d.value },
      { head: 'Type', get: (d) => d.type },
      { head: 'Scenario or reason', get: (d) => d.scenario || d.reason || d.origin, title: (d) => d.reason || d.scenario },
      { head: 'Remaining', cls: 'num left', get: (d) => W.fmtDuration(d.remaining_s) },
      { head: '', cls: 'act', get: (d) => h('button', { type: 'button', 'data-id': d.id, text: 'Unban', onclick: () => unban(d) }), sig: (d) => String(d.id) },
    ], sec.decisions, (d) => d.id, 'no decision in force');
    table('top-sources', topCols('Source', 'q', 'Alerts'), sec.top_sources, (r) => r.key, 'no alert in this range');
    table('top-scenarios', topCols('Scenario', null, 'Alerts'), sec.top_scenarios, (r) => r.key, 'no alert in this range');
  };

  const renderCluster = (cl) => {
    const facts = [
      ['Leader', cl.leader || 'none'], ['Term', W.fmtInt(cl.term)], ['Applied index', W.fmtInt(cl.applied_index)],
      ['This node', cl.node + (cl.ready ? ', ready' : ', not ready: ' + cl.ready_reason)],
      ['Records/s', W.fmtNum(cl.records_per_s)], ['Commits/s', W.fmtNum(cl.commits_per_s)],
      ['Commit latency p50 / p99', cl.commit_latency_ms ? W.fmtMs(cl.commit_latency_ms.p50) + ' / ' + W.fmtMs(cl.commit_latency_ms.p99) : '–'],
      ['Leader changes seen', W.fmtInt(cl.leader_changes)],
      ['Last rebalance', cl.last_rebalance ? W.plural(cl.last_rebalance.moves, 'move') + ', ' + W.fmtDuration(cl.last_rebalance.ago_s) + ' ago' : 'none since this node started'],
    ];
    const dl = $('cluster-facts');
    const sig = JSON.stringify(facts);
    if (dl.dataset.sig !== sig) {
      dl.dataset.sig = sig;
      dl.replaceChildren(...facts.map(([k, v]) => h('div', {}, h('dt', { text: k }), h('dd', { text: v }))));
    }
    table('members', [
      { head: 'Member', get: (m) => m.id + (m.leader ? ' ★' : '') + (m.self ? ' (this)' : ''), title: (m) => (m.leader ? 'Raft leader' : '') },
      { head: 'State', cls: 'state', get: (m) => h('span', { class: 'badge ' + m.state, text: m.state }), sig: (m) => m.state },
      { head: 'Voter', get: (m) => (m.voter ? 'voter' : 'non-voter') },
      { head: 'HTTP', get: (m) => (m.http_addr ? h('a', { href: 'http://' + m.http_addr + '/' + location.search, text: m.http_addr }) : '–'), sig: (m) => m.http_addr + location.search },
    ], cl.members, (m) => m.id, 'no member recorded yet');
    table('partitions', [
      { head: 'Partition', cls: 'num', get: (p) => String(p.partition) },
      { head: 'Owner', get: (p) => p.owner || '–' },
      { head: 'Epoch', cls: 'num', get: (p) => W.fmtInt(p.epoch) },
      { head: 'Committed', cls: 'num', get: (p) => W.fmtInt(p.committed_offset) },
      { head: 'Log end', cls: 'num', get: (p) => (p.log_end_offset < 0 ? '?' : W.fmtInt(p.log_end_offset)) },
      { head: 'Lag', cls: 'num', get: (p) => (p.lag < 0 ? '?' : W.fmtInt(p.lag)) },
      { head: 'Records/s', cls: 'num', get: (p) => W.fmtNum(p.records_per_s) },
      { head: 'Last commit', cls: 'num', get: (p) => (p.last_commit_s == null ? '–' : W.fmtDuration(p.last_commit_s) + ' ago') },
    ], cl.partitions, (p) => p.partition, 'no partition assigned yet');
  };

  // ---- ban and unban -----------------------------------------------------

  // The admin token lives in the password field only: never stored, sent
  // as the bearer header of the two requests that need it.
  const admin = async (method, path, body) => {
    const token = $('admin-token').value.trim();
    if (!token) throw new Error('type the admin token first');
    const r = await fetch(path, {
      method, credentials: 'same-origin',
      headers: Object.assign({ Authorization: 'Bearer ' + token }, body ? { 'Content-Type': 'application/json' } : {}),
      body: body ? JSON.stringify(body) : undefined,
    });
    const doc = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(doc.error || r.status + ' ' + r.statusText);
    return doc;
  };

  const result = (msg, bad) => {
    const e = $('ban-result');
    e.textContent = msg;
    e.classList.toggle('error', !!bad);
  };

  const unban = async (d) => {
    try {
      await admin('DELETE', '/v1/decisions/' + encodeURIComponent(d.id));
      result('Unbanned ' + d.value + ' (decision ' + d.id + ').');
    } catch (e) {
      result('Unban ' + d.value + ': ' + e.message, true);
    }
  };

  const ban = async (e) => {
    e.preventDefault();
    const value = $('ban-value').value.trim();
    if (!value) return result('Type an address or a range to ban.', true);
    try {
      const d = await admin('POST', '/v1/decisions', { value, type: 'ban', duration: $('ban-duration').value.trim() || '4h',
        reason: $('ban-reason').value.trim() || 'from the dashboard' });
      result('Banned ' + d.value + ' until ' + d.until + ' (decision ' + d.id + ').');
      $('ban-value').value = '';
    } catch (err) {
      result('Ban ' + value + ': ' + err.message, true);
    }
  };

  // ---- theme -------------------------------------------------------------

  const theme = () => {
    const set = document.documentElement.dataset.theme;
    return set || (matchMedia('(prefers-color-scheme: dark)').matches ? 'dark' : 'light');
  };

  const showTheme = () => setText('theme', theme() === 'dark' ? 'Light' : 'Dark');

  // ---- start -------------------------------------------------------------

  const start = () => {
    try {
      const t = localStorage.getItem('warden-theme');
      if (t === 'dark' || t === 'light') document.documentElement.dataset.theme = t;
    } catch (_) {
      /* storage refused: the system's theme */
    }
    showTheme();
    $('theme').addEventListener('click', () => {
      const next = theme() === 'dark' ? 'light' : 'dark';
      document.documentElement.dataset.theme = next;
      try {
        localStorage.setItem('warden-theme', next);
      } catch (_) {
        /* kept for this page only */
      }
      showTheme();
      if (last) render(last);
    });
    for (const b of document.querySelectorAll('[data-range]')) {
      b.addEventListener('click', () => go({ range: b.dataset.range === 'all' ? '' : b.dataset.range, vhost: state.vhost, q: state.q }));
    }
    $('filters').addEventListener('submit', (e) => {
      e.preventDefault();
      const st = { vhost: $('vhost').value.trim(), q: $('q').value.trim(), from: $('from').value.trim(), to: $('to').value.trim() };
      if (!st.from && !st.to) st.range = state.range;
      go(st);
    });
    $('clear').addEventListener('click', () => go({}));
    $('ban').addEventListener('submit', ban);
    window.addEventListener('popstate', () => {
      state = readState();
      showState();
      connect();
    });
    let resize = 0;
    window.addEventListener('resize', () => {
      clearTimeout(resize);
      resize = setTimeout(() => last && render(last), 150);
    });
    state = readState();
    showState();
    connect();
  };

  W.start = start;
  if (!window.wardenNoStart) document.addEventListener('DOMContentLoaded', start);
})();

// Tests of the page's data-to-chart functions (window.warden), run in
// Chromium by TestBrowser_ChartFunctions. Evaluates to the list of
// failures: empty when all pass.
(() => {
  const W = window.warden;
  const failures = [];
  const eq = (name, got, want) => {
    const g = JSON.stringify(got), w = JSON.stringify(want);
    if (g !== w) failures.push(name + ': got ' + g + ', want ' + w);
  };

  // Numbers as the header shows them: exact, digits grouped.
  eq('fmtInt 17164', W.fmtInt(17164), '17,164');
  eq('fmtInt 0', W.fmtInt(0), '0');
  eq('fmtInt 1234567', W.fmtInt(1234567), '1,234,567');
  eq('fmtInt null', W.fmtInt(null), '–');
  eq('fmtBytes', [W.fmtBytes(512), W.fmtBytes(2048), W.fmtBytes(5.5 * 1024 * 1024), W.fmtBytes(2747282740)],
    ['512 B', '2.00 KiB', '5.50 MiB', '2.56 GiB']);
  eq('fmtPct', [W.fmtPct(0), W.fmtPct(0.0001), W.fmtPct(0.05), W.fmtPct(0.5)], ['0%', '0.01%', '5.00%', '50.0%']);
  eq('fmtPct tiny', W.fmtPct(0.00001), '<0.01%');
  eq('fmtMs', [W.fmtMs(0.5), W.fmtMs(12.34), W.fmtMs(250), W.fmtMs(1500)], ['0.50 ms', '12.3 ms', '250 ms', '1.50 s']);
  eq('plural', [W.plural(1, 'alert'), W.plural(0, 'alert'), W.plural(1200, 'move')], ['1 alert', '0 alerts', '1,200 moves']);
  eq('fmtPair', [W.fmtPair(41.4, 94.1), W.fmtPair(41.4, 1500)], ['41.4 / 94.1 ms', '41.4 ms / 1.50 s']);
  eq('fmtDuration', [W.fmtDuration(5), W.fmtDuration(65), W.fmtDuration(3 * 3600 + 59 * 60), W.fmtDuration(2 * 86400 + 3600)],
    ['5s', '1m 5s', '3h 59m', '2d 1h']);
  eq('fmtTime', [W.fmtTime(Date.UTC(2015, 4, 20, 21, 5) / 1000), W.fmtTime(Date.UTC(2015, 4, 20, 21, 5) / 1000, true)],
    ['21:05', '05-20 21:05']);
  eq('fmtStep', [W.fmtStep(60), W.fmtStep(300), W.fmtStep(7200)], ['1 min', '5 min', '2 h']);

  // Axis ticks: round steps that cover the maximum.
  eq('niceTicks 87', W.niceTicks(87, 4), { max: 100, ticks: [0, 20, 40, 60, 80, 100] });
  eq('niceTicks 3', W.niceTicks(3, 4), { max: 3, ticks: [0, 1, 2, 3] });
  eq('niceTicks 0', W.niceTicks(0, 4), { max: 1, ticks: [0, 1] });
  eq('niceTicks 0.3', W.niceTicks(0.3, 4), { max: 0.3, ticks: [0, 0.1, 0.2, 0.3] });
  eq('niceTicks 2500', W.niceTicks(2500, 4), { max: 2500, ticks: [0, 500, 1000, 1500, 2000, 2500] });

  eq('niceTicks integer', W.niceTicks(1, 4, true), { max: 1, ticks: [0, 1] });
  eq('axisTicks bytes', W.axisTicks(390000, 4, 'bytes'),
    { max: 409600, ticks: [0, 102400, 204800, 307200, 409600], labels: ['0 KiB', '100 KiB', '200 KiB', '300 KiB', '400 KiB'] });
  eq('axisTicks small bytes', W.axisTicks(700, 4, 'bytes').labels, ['0 B', '200 B', '400 B', '600 B', '800 B']);
  eq('axisTicks ms', W.axisTicks(94, 4, 'ms').labels, ['0 ms', '20 ms', '40 ms', '60 ms', '80 ms', '100 ms']);
  eq('axisTicks s', W.axisTicks(2500, 4, 'ms').labels, ['0 s', '0.5 s', '1 s', '1.5 s', '2 s', '2.5 s']);
  eq('axisTicks count', W.axisTicks(2, 4, 'count').labels, ['0', '1', '2']);

  // Time ticks: on round minutes and hours, with the date once a day.
  const t0 = Date.UTC(2015, 4, 20, 20, 6) / 1000;
  const hour = W.timeTicks(t0, t0 + 3600, 6);
  eq('timeTicks hour', hour.map((t) => t.label), ['20:10', '20:20', '20:30', '20:40', '20:50', '21:00']);
  const day = W.timeTicks(Date.UTC(2015, 4, 19, 21, 6) / 1000, Date.UTC(2015, 4, 20, 21, 6) / 1000, 6);
  eq('timeTicks day', day.map((t) => t.label), ['00:00', '06:00', '12:00', '18:00']);
  const days = W.timeTicks(Date.UTC(2015, 4, 17, 10) / 1000, Date.UTC(2015, 4, 20, 21) / 1000, 4);
  eq('timeTicks days', days.map((t) => t.label), ['05-18', '05-19', '05-20']);
  eq('timeTicks empty', W.timeTicks(10, 10, 4), []);

  // Stacking: each layer sits on the ones before.
  eq('stack', W.stack([[1, 2], [3, 4], [0, 1]]),
    [{ lower: [0, 0], upper: [1, 2] }, { lower: [1, 2], upper: [4, 6] }, { lower: [4, 6], upper: [4, 7] }]);
  eq('stack none', W.stack([]), []);

  // Step areas: flat tops per bucket, closed along the lower edge.
  const x = (i) => i * 10, y = (v) => 100 - v;
  eq('stepArea', W.stepArea([0, 0], [5, 10], x, y), 'M0,95L10,95L10,90L20,90L20,100L10,100L10,100L0,100Z');
  eq('stepArea empty', W.stepArea([], [], x, y), '');

  eq('stepLine', W.stepLine([5, null], x, y), 'M0,95L10,95L10,100L20,100');

  // Lines at bucket middles; a null breaks the line; a lone point is a dash.
  eq('linePath', W.linePath([1, 2, null, 4], x, y), 'M5,99L15,98M35,96L37,96');
  eq('linePath all null', W.linePath([null, null], x, y), '');

  eq('maxOf', W.maxOf([1, null, 7], [3, NaN]), 7);
  eq('maxOf empty', W.maxOf(), 0);
  eq('sumColumns', W.sumColumns([[1, 2, 3], [10, 0, 5]], 3), [11, 2, 8]);
  eq('ratios', W.ratios([1, 0, 3], [2, 0, 4]), [0.5, null, 0.75]);
  return failures;
})();

// The session cookie is SameSite=Strict, so a link to the dashboard from
// another site (a chat, a wiki) arrives here without it even when the
// session is good. Ask once, from this page (same site: the cookie goes
// along), and go on to the view if it is.
'use strict';
(() => {
  const key = 'warden-login-retry';
  fetch('/v1/cluster', { credentials: 'same-origin' }).then((r) => {
    if (!r.ok) return;
    try {
      // Once: should the cookie still not come along, the form stays.
      if (Date.now() - Number(sessionStorage.getItem(key) || 0) < 10000) return;
      sessionStorage.setItem(key, String(Date.now()));
    } catch (_) {
      return;
    }
    // Not location.replace: to the same URL it is a reload, and a reload
    // keeps the cross-site start (no cookie again).
    location.href = document.querySelector('input[name=next]').value || '/';
  }, () => {});
})();

/**
 * The dashboard page: one self-contained HTML document (no external assets; the socket.io client
 * script comes from the coordinator itself). It renders every `state` the dashboard socket pushes
 * and keeps the rounds it has seen in `window.fedtlDashboard.seen` (what the browser test reads).
 * Every value from the coordinator is inserted as text, never as HTML.
 */
export const DASHBOARD_PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>fedtl coordinator</title>
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5rem; color: #1b1f24; background: #fafbfc; }
  h1 { font-size: 1.3rem; margin: 0 0 .25rem; }
  .muted { color: #57606a; }
  .cards { display: flex; flex-wrap: wrap; gap: .75rem; margin: 1rem 0; }
  .card { background: #fff; border: 1px solid #d0d7de; border-radius: 6px; padding: .6rem .9rem; min-width: 9rem; }
  .card b { display: block; font-size: 1.35rem; }
  table { border-collapse: collapse; background: #fff; margin: .5rem 0 1.25rem; }
  th, td { border: 1px solid #d0d7de; padding: .25rem .6rem; text-align: right; }
  th { background: #f0f3f6; } td:first-child, th:first-child { text-align: left; }
  #status.live { color: #1a7f37; } #status.down { color: #cf222e; }
  svg { background: #fff; border: 1px solid #d0d7de; border-radius: 6px; }
</style>
</head>
<body>
<h1>fedtl coordinator <span id="status" class="down">connecting…</span></h1>
<div class="muted" id="subtitle"></div>
<div class="cards">
  <div class="card">round <b id="round">–</b><span class="muted" id="planned"></span></div>
  <div class="card">phase <b id="phase">–</b><span class="muted" id="deadline"></span></div>
  <div class="card">clients connected / ready <b id="clients">–</b></div>
  <div class="card">this round: selected / returned / dropped <b id="active">–</b></div>
  <div class="card">accuracy (last round) <b id="accuracy">–</b></div>
  <div class="card">traffic down / up <b id="traffic">–</b></div>
  <div class="card">privacy ε spent <b id="epsilon">–</b></div>
</div>
<h2>Accuracy per round (loss in the table)</h2>
<svg id="chart" width="640" height="200" role="img" aria-label="accuracy per round"></svg>
<table id="history"><thead><tr><th>round</th><th>selected</th><th>accepted</th><th>dropped</th><th>rejected</th><th>examples</th><th>accuracy</th><th>loss</th><th>down</th><th>up</th><th>time</th></tr></thead><tbody></tbody></table>
<h2>Clients</h2>
<table id="clientTable"><thead><tr><th>client id</th><th>status</th><th>last seen</th><th>refusals by reason</th></tr></thead><tbody></tbody></table>
<h2>Refusals by reason (whole run)</h2>
<div id="rejections" class="muted">none</div>
<script>
(function () {
  var token = new URLSearchParams(location.search).get('token') || '';
  var seen = [];
  window.fedtlDashboard = { seen: seen, updates: 0 };
  function $(id) { return document.getElementById(id); }
  function text(id, value) { $(id).textContent = value; }
  function pct(x) { return x === null || x === undefined ? '–' : (100 * x).toFixed(1) + ' %'; }
  function num(x, digits) { return x === null || x === undefined ? '–' : x.toFixed(digits); }
  function bytes(n) { return n >= 1e6 ? (n / 1e6).toFixed(1) + ' MB' : n >= 1e3 ? (n / 1e3).toFixed(1) + ' kB' : n + ' B'; }
  function reasons(map) { var parts = []; for (var k in map) parts.push(k + ' ' + map[k]); return parts.join(', ') || '–'; }
  function ago(t, now) { var s = Math.max(0, (now - t) / 1000); return s < 1 ? 'now' : s.toFixed(0) + ' s ago'; }
  function row(cells) { var tr = document.createElement('tr'); cells.forEach(function (c) { var td = document.createElement('td'); td.textContent = c; tr.appendChild(td); }); return tr; }
  function chart(history) {
    var svg = $('chart'), w = 640, h = 200, pad = 30, ns = 'http://www.w3.org/2000/svg';
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    var points = history.filter(function (r) { return r.accuracy !== null; });
    var n = Math.max(2, history.length);
    function x(i) { return pad + (w - 2 * pad) * (i - 1) / (n - 1); }
    function y(v) { return h - pad - (h - 2 * pad) * v; }
    [0, 0.5, 1].forEach(function (v) { var t = document.createElementNS(ns, 'text'); t.setAttribute('x', 2); t.setAttribute('y', y(v) + 4); t.setAttribute('font-size', '10'); t.textContent = (100 * v) + '%'; svg.appendChild(t); });
    var line = document.createElementNS(ns, 'polyline');
    line.setAttribute('fill', 'none'); line.setAttribute('stroke', '#0969da'); line.setAttribute('stroke-width', '2');
    line.setAttribute('points', points.map(function (r) { return x(r.round) + ',' + y(r.accuracy); }).join(' '));
    svg.appendChild(line);
    points.forEach(function (r) { var c = document.createElementNS(ns, 'circle'); c.setAttribute('cx', x(r.round)); c.setAttribute('cy', y(r.accuracy)); c.setAttribute('r', 3); c.setAttribute('fill', '#0969da'); svg.appendChild(c); });
  }
  function render(s) {
    window.fedtlDashboard.updates++;
    if (seen[seen.length - 1] !== s.roundsCompleted) seen.push(s.roundsCompleted);
    text('subtitle', 'base ' + s.base + ' · strategy ' + s.strategy);
    text('round', s.active ? s.active.round : s.roundsCompleted);
    text('planned', ' completed ' + s.roundsCompleted + ' of ' + s.roundsPlanned);
    text('phase', s.phase);
    text('deadline', s.active ? ' deadline in ' + Math.max(0, (s.active.deadline - s.now) / 1000).toFixed(0) + ' s' : '');
    text('clients', s.clients.connected + ' / ' + s.clients.ready);
    text('active', s.active ? s.active.selected + ' / ' + s.active.answered + ' / ' + s.active.dropped : '–');
    var last = s.history[s.history.length - 1];
    text('accuracy', last ? pct(last.accuracy) : '–');
    text('traffic', bytes(s.traffic.bytesDown) + ' / ' + bytes(s.traffic.bytesUp));
    text('epsilon', s.privacy.epsilon === null ? 'n/a' : s.privacy.epsilon.toFixed(2));
    var body = $('history').tBodies[0]; body.textContent = '';
    s.history.forEach(function (r) { body.appendChild(row([r.round, r.selected, r.accepted, r.dropped, reasons(r.rejected), r.examples, pct(r.accuracy), num(r.loss, 4), bytes(r.bytesDown), bytes(r.bytesUp), r.seconds.toFixed(1) + ' s'])); });
    var clients = $('clientTable').tBodies[0]; clients.textContent = '';
    s.clients.list.forEach(function (c) { clients.appendChild(row([c.id, c.status, ago(c.lastSeen, s.now), reasons(c.rejections)])); });
    text('rejections', reasons(s.rejections));
    chart(s.history);
  }
  var script = document.createElement('script');
  script.src = '/dashboard/socket.io.min.js?token=' + encodeURIComponent(token);
  script.onload = function () {
    var socket = io('/dashboard', { path: '/dashboard/socket.io', auth: { token: token } });
    socket.on('connect', function () { $('status').textContent = 'live'; $('status').className = 'live'; });
    socket.on('disconnect', function () { $('status').textContent = 'disconnected'; $('status').className = 'down'; });
    socket.on('connect_error', function (e) { $('status').textContent = e.message; $('status').className = 'down'; });
    socket.on('state', render);
  };
  document.head.appendChild(script);
})();
</script>
</body>
</html>
`;

// The endpoint page's chart: requests sent per second against the limit line, pauses shaded.
// Its data is the page's <script type="application/json" id="timeline-data"> (the timeline route's
// answer), refreshed from /ui/endpoints/{id}/timeline.json every 5 s. No inline script anywhere.
(function () {
  "use strict";

  function columns(timeline) {
    var xs = [], sent = [], limit = [];
    timeline.points.forEach(function (p) {
      xs.push(Date.parse(p.at) / 1000);
      sent.push(p.sent);
      limit.push(timeline.limit_per_second);
    });
    return [xs, sent, limit];
  }

  function shadePauses(u) {
    var pauses = (window.hookpumpChart && window.hookpumpChart.timeline.pauses) || [];
    var ctx = u.ctx;
    ctx.save();
    pauses.forEach(function (p) {
      var left = u.valToPos(Math.max(Date.parse(p.start) / 1000, u.scales.x.min), "x", true);
      var right = u.valToPos(Math.min(Date.parse(p.end) / 1000, u.scales.x.max), "x", true);
      if (right <= left) return;
      ctx.fillStyle = p.reason === "retry_after" ? "rgba(179,45,46,0.18)" : "rgba(219,166,23,0.22)";
      ctx.fillRect(left, u.bbox.top, right - left, u.bbox.height);
    });
    ctx.restore();
  }

  // Times as the tables show them: 24-hour UTC, whatever the browser's own time zone.
  function utcClock(seconds) {
    return new Date(seconds * 1000).toISOString().slice(11, 19);
  }

  // The legend shows the latest second until a point is hovered, and again when the pointer leaves
  // (uPlot itself shows "--" with no point under the cursor).
  function showLatest(u) {
    var last = u.data[0].length - 1;
    if (u.legend.idx == null && last >= 0) u.setLegend({ idx: last });
  }

  function draw(element, timeline) {
    var width = Math.max(240, element.clientWidth || 800);
    var options = {
      width: width,
      height: 280,
      axes: [
        { space: 70, values: function (u, splits) { return splits.map(utcClock); } },
        { label: "requests" }
      ],
      scales: { x: { time: true }, y: { range: function (u, min, max) { return [0, Math.max(max, timeline.limit_per_second) + 1]; } } },
      series: [
        { label: "time (UTC)", value: function (u, v) { return v == null ? "--" : utcClock(v); } },
        { label: "sent per second", stroke: "#0a4b78", fill: "rgba(10,75,120,0.15)", paths: uPlot.paths.bars({ size: [0.9, 8] }) },
        { label: "limit", stroke: "#b32d2e", dash: [6, 4], width: 2, points: { show: false } }
      ],
      hooks: { drawClear: [shadePauses], ready: [showLatest], setLegend: [showLatest] }
    };
    var data = columns(timeline);
    var plot = new uPlot(options, data, element);
    window.hookpumpChart = { plot: plot, data: data, timeline: timeline };
  }

  function refresh(element) {
    fetch(element.dataset.timelineUrl, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (timeline) {
        if (!timeline || !window.hookpumpChart) return;
        var data = columns(timeline);
        window.hookpumpChart.timeline = timeline;
        window.hookpumpChart.data = data;
        window.hookpumpChart.plot.setData(data);
      })
      .catch(function () { /* keep the last picture; the next poll tries again */ });
  }

  // Copy buttons (hidden until this script runs, since they need it): copy their data-copy text.
  function showCopyButtons(root) {
    root.querySelectorAll("button.copy[hidden]").forEach(function (button) { button.hidden = false; });
  }
  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest("button.copy");
    if (!button || !navigator.clipboard) return;
    navigator.clipboard.writeText(button.dataset.copy).then(function () {
      button.textContent = "Copied";
      window.setTimeout(function () { button.textContent = "Copy"; }, 1500);
    }, function () { /* no permission: the full id is still the link's title */ });
  });
  document.addEventListener("htmx:afterSwap", function (event) { showCopyButtons(event.target.parentNode || document); });

  document.addEventListener("DOMContentLoaded", function () {
    showCopyButtons(document);
    var element = document.getElementById("chart");
    var source = document.getElementById("timeline-data");
    if (!element || !source || typeof uPlot === "undefined") return;
    draw(element, JSON.parse(source.textContent));
    window.setInterval(function () {
      if (document.visibilityState === "visible") refresh(element);
    }, 5000);
  });
})();

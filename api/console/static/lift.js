/* A lift's telemetry chart: the API's history (GET /api/v1/lifts/{id}/telemetry), drawn with
   ECharts; the x axis in the site's zone (data-timezone on <body>). */
(function () {
  "use strict";
  var el = document.getElementById("chart");
  if (!el || !window.echarts) return;
  var chart = echarts.init(el, null, { renderer: "canvas" });
  var tz = document.body.dataset.timezone || "UTC";
  var clock = new Intl.DateTimeFormat(document.body.dataset.lang || "en", {
    timeZone: tz, hour: "2-digit", minute: "2-digit", hour12: false,
  });
  window.addEventListener("resize", function () { chart.resize(); });
  function load(range) {
    var end = Date.now(), start = end - range;
    var q = "start=" + start + "&end=" + end + "&fields=speed,floor_index,load";
    if (range > 3600000) q += "&every=1m&agg=mean";
    fetch("/api/v1/lifts/" + encodeURIComponent(el.dataset.liftId) + "/telemetry?" + q, {
      credentials: "same-origin", headers: { Accept: "application/json" },
    }).then(function (r) { return r.json(); }).then(function (answer) {
      var pts = answer.points || [];
      function series(name, key, axis) {
        return {
          name: name, type: "line", yAxisIndex: axis, showSymbol: false, connectNulls: false,
          step: key === "floor_index" ? "end" : false,
          data: pts.map(function (p) {
            var v = p[key];
            if (typeof v === "string") v = parseFloat(v);
            return [Date.parse(p.time), v === undefined ? null : v];
          }),
        };
      }
      chart.setOption({
        animation: false,
        title: pts.length ? { show: false } : { show: true, text: el.dataset.lEmpty, left: "center", top: "middle", textStyle: { fontSize: 14, color: "#666" } },
        tooltip: { trigger: "axis" },
        legend: { top: 0 },
        grid: { left: 50, right: 50, top: 30, bottom: 30 },
        xAxis: { type: "time", min: start, max: end, axisLabel: { formatter: function (v) { return clock.format(new Date(v)); } } },
        yAxis: [{ type: "value", name: el.dataset.lSpeed }, { type: "value", name: el.dataset.lFloor, minInterval: 1 }, { type: "value", name: el.dataset.lLoad, show: false }],
        series: [series(el.dataset.lSpeed, "speed", 0), series(el.dataset.lFloor, "floor_index", 1), series(el.dataset.lLoad, "load", 2)],
      }, true);
      el.dataset.points = String(pts.length);
    }).catch(function () { el.dataset.points = "error"; });
  }
  document.querySelectorAll("[data-range]").forEach(function (b) {
    b.addEventListener("click", function () {
      document.querySelectorAll("[data-range]").forEach(function (o) { o.setAttribute("aria-pressed", String(o === b)); });
      load(parseInt(b.dataset.range, 10));
    });
  });
  load(3600000);
})();

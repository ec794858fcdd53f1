// Inspector's fault report (api/console/inspect.py): the chart, drawn by Apache ECharts from the
// figures the page carries (#report-data, the same numbers as the table under it).
"use strict";

(function () {
  const el = document.getElementById("report-chart");
  const source = document.getElementById("report-data");
  if (!el || !source || typeof echarts === "undefined") return;
  const data = JSON.parse(source.textContent || "null");
  if (!data || data.keys.length === 0) {
    el.hidden = true;
    return;
  }
  el.style.width = "100%";
  el.style.height = "360px";
  const chart = echarts.init(el, null, { renderer: "svg" });
  chart.setOption({
    animation: false,
    aria: { enabled: true },
    tooltip: { trigger: "axis" },
    legend: { top: 0 },
    grid: { left: 48, right: 56, top: 40, bottom: 64 },
    xAxis: { type: "category", data: data.keys, axisLabel: { rotate: data.keys.length > 6 ? 30 : 0 } },
    yAxis: [
      { type: "value", name: data.axis[0], minInterval: 1 },
      { type: "value", name: data.axis[1] },
    ],
    series: data.series,
  });
  el.dataset.rendered = "true";
  window.addEventListener("resize", () => chart.resize());
})();

/* Adapter Hub — the Evaluation tab's charts: scores across versions, drawn with plotly.js (served by
 * the hub from the `plotly` package; loaded by this tab only). One chart per suite and metric, from
 * the JSON the page carries (#adapter-charts); without JavaScript each chart is a table. */
(function () {
  "use strict";

  var ACCENT = "#4f46e5";
  var BASELINE = "#5f6b7e";
  var CURRENT = "#d97706";

  function format(value) {
    var size = Math.abs(value);
    return value === 0 || (size >= 0.01 && size < 10000) ? value.toPrecision(4).replace(/\.?0+$/, "") : value.toPrecision(3);
  }

  // Plotly reads titles and hover templates as a little HTML: names are escaped (suites reported by
  // users are free text).
  function esc(text) {
    return String(text).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/%/g, "&#37;");
  }

  function draw(chart, current) {
    var holder = document.querySelector('[data-chart="' + chart.id + '"]');
    if (!holder) return;
    var x = chart.points.map(function (p) { return "v" + p[0]; });
    var y = chart.points.map(function (p) { return p[1]; });
    // The direction goes on the value axis: the title stays short enough for a phone's width.
    var direction = chart.higher_is_better === true ? " (↑ better)" : chart.higher_is_better === false ? " (↓ better)" : "";
    var traces = [{
      type: "scatter",
      mode: "lines+markers",
      name: esc(chart.suite),
      x: x,
      y: y,
      line: { color: ACCENT, width: 2.5 },
      // The version shown on the page stands out.
      marker: {
        size: chart.points.map(function (p) { return p[0] === current ? 12 : 8; }),
        color: chart.points.map(function (p) { return p[0] === current ? CURRENT : ACCENT; }),
        line: { color: "#fff", width: 1.5 },
      },
      hovertemplate: "%{x}: %{y:.4g}<extra>" + esc(chart.suite) + "</extra>",
    }];
    if (chart.baseline !== null && chart.baseline !== undefined) {
      traces.push({
        type: "scatter",
        mode: "lines",
        name: "base model (baseline)",
        x: [x[0], x[x.length - 1]],
        y: [chart.baseline, chart.baseline],
        line: { color: BASELINE, width: 1.5, dash: "dash" },
        hovertemplate: "base model: %{y:.4g}<extra></extra>",
      });
    }
    var layout = {
      // The title sits in the top margin, left; the legend (when there is one) sits below the plot:
      // the two never share a line.
      title: { text: "<b>" + esc(chart.suite) + "</b> · " + esc(chart.metric), x: 0, xanchor: "left", xref: "paper", y: 1, yref: "container", yanchor: "top", pad: { t: 10 }, font: { size: 14 } },
      height: traces.length > 1 ? 290 : 260,
      margin: { l: 56, r: 16, t: 44, b: traces.length > 1 ? 70 : 36 },
      showlegend: traces.length > 1,
      legend: { orientation: "h", x: 0, xanchor: "left", y: -0.22, yanchor: "top", font: { size: 12 } },
      xaxis: { type: "category", fixedrange: true, showgrid: false, linecolor: "#cfd5e1" },
      yaxis: { title: { text: esc(chart.metric) + direction, font: { size: 12 } }, fixedrange: true, gridcolor: "#edf0f5", zeroline: false, tickformat: ".3~g" },
      font: { family: "system-ui, -apple-system, 'Segoe UI', Roboto, 'Noto Sans', 'DejaVu Sans', sans-serif", size: 12, color: "#1b2130" },
      paper_bgcolor: "#fff",
      plot_bgcolor: "#fff",
      hoverlabel: { bgcolor: "#fff" },
    };
    holder.innerHTML = "";
    holder.classList.add("drawn");
    window.Plotly.newPlot(holder, traces, layout, { displayModeBar: false, responsive: true });
    holder.setAttribute("role", "img");
    holder.setAttribute("aria-label", chart.suite + " " + chart.metric + " across versions: " + x.map(function (v, i) { return v + " " + format(y[i]); }).join(", "));
  }

  function init() {
    var data = document.getElementById("adapter-charts");
    if (!data || !window.Plotly) return; // no plotly.js: the tables stay
    var section = document.getElementById("history");
    var current = section ? parseInt(section.getAttribute("data-current-version"), 10) : NaN;
    JSON.parse(data.textContent).forEach(function (chart) { draw(chart, current); });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();

/* Adapter Hub — a search job's chart (composition method search): each candidate's score as a dot, the
 * best score so far as a line, the uniform-weight merge (the first candidate) as a reference, drawn with
 * plotly.js (served by the hub; loaded by search job pages only). hub.js follows the job through the REST
 * API; whenever it shows new progress or a new status, this fetches the same job and redraws from its
 * report. Without JavaScript the page shows the numbers and refreshes itself while the job runs. */
(function () {
  "use strict";

  var ACCENT = "#4f46e5";
  var DOTS = "#94a3b8";
  var UNIFORM = "#d97706";
  var PARENTS = ["#059669", "#0891b2", "#be185d", "#7c3aed", "#65a30d", "#475569"];

  function format(value, digits) {
    return value === null || value === undefined ? "—" : Number(value).toFixed(digits);
  }

  // The page's numbers from the job's report: report.search holds done, budget, best and trace while the
  // job runs; weights, score, uniform_score and trace once it has succeeded.
  function fromReport(report, previous) {
    var search = (report && report.search) || {};
    var trace = search.trace || [];
    var scores = trace.map(function (c) { return c.score; });
    var finished = Object.prototype.hasOwnProperty.call(search, "weights");
    var best = finished ? search.score : (search.best || {}).score;
    return {
      scores: scores,
      finished: finished,
      done: search.done || trace.length,
      budget: search.budget || previous.budget,
      best: best === undefined ? null : best,
      weights: finished ? search.weights : (search.best || {}).weights || [],
      uniform: finished ? search.uniform_score : scores.length ? scores[0] : null,
      parents: search.parents || previous.parents || [],
      axis: previous.axis,
    };
  }

  function runningMax(scores) {
    var best = null;
    return scores.map(function (score) {
      if (score !== null && (best === null || score > best)) best = score;
      return best;
    });
  }

  function draw(holder, data) {
    if (!data.scores.length) return;
    var x = data.scores.map(function (_, i) { return i + 1; });
    var traces = [
      {
        type: "scatter",
        mode: "markers",
        name: "candidate",
        x: x,
        y: data.scores,
        marker: { color: DOTS, size: 7, line: { color: "#fff", width: 1 } },
        hovertemplate: "candidate %{x}: %{y:.4f}<extra></extra>",
      },
      {
        type: "scatter",
        mode: "lines",
        name: "best so far",
        x: x,
        y: runningMax(data.scores),
        line: { color: ACCENT, width: 2.5, shape: "hv" },
        hovertemplate: "best after %{x}: %{y:.4f}<extra></extra>",
      },
    ];
    if (data.uniform !== null && data.uniform !== undefined) {
      traces.push({
        type: "scatter",
        mode: "lines",
        name: "uniform merge",
        x: [1, Math.max(data.budget, x.length)],
        y: [data.uniform, data.uniform],
        line: { color: UNIFORM, width: 1.5, dash: "dash" },
        hovertemplate: "uniform merge: %{y:.4f}<extra></extra>",
      });
    }
    // Each parent alone (weight 1), scored the same way once the search is done: what search must beat.
    (data.parents || []).forEach(function (parent, i) {
      if (parent.score === null || parent.score === undefined) return;
      traces.push({
        type: "scatter",
        mode: "lines",
        name: parent.adapter + " alone",
        x: [1, Math.max(data.budget, x.length)],
        y: [parent.score, parent.score],
        line: { color: PARENTS[i % PARENTS.length], width: 1.25, dash: "dot" },
        hovertemplate: parent.adapter + " alone: %{y:.4f}<extra></extra>",
      });
    });
    var layout = {
      title: { text: "<b>Best score per candidate</b> · higher is better", x: 0, xanchor: "left", xref: "paper", y: 1, yref: "container", yanchor: "top", pad: { t: 10 }, font: { size: 14 } },
      height: 380,
      margin: { l: 64, r: 16, t: 44, b: 84 },
      showlegend: true,
      legend: { orientation: "h", x: 0, xanchor: "left", y: -0.25, yanchor: "top", font: { size: 12 } },
      // The x axis spans the whole budget from the start: the line grows into it while the job runs.
      xaxis: { title: { text: "candidate", font: { size: 12 } }, range: [0.5, Math.max(data.budget, x.length) + 0.5], fixedrange: true, showgrid: false, linecolor: "#cfd5e1", zeroline: false },
      yaxis: { title: { text: data.axis, font: { size: 12 } }, fixedrange: true, gridcolor: "#edf0f5", zeroline: false, tickformat: ".3~g" },
      font: { family: "system-ui, -apple-system, 'Segoe UI', Roboto, 'Noto Sans', 'DejaVu Sans', sans-serif", size: 12, color: "#1b2130" },
      paper_bgcolor: "#fff",
      plot_bgcolor: "#fff",
      hoverlabel: { bgcolor: "#fff" },
    };
    var empty = holder.querySelector("[data-search-field=empty]");
    if (empty) empty.remove();
    holder.classList.add("drawn");
    window.Plotly.react(holder, traces, layout, { displayModeBar: false, responsive: true });
    holder.setAttribute("role", "img");
    holder.setAttribute(
      "aria-label",
      data.scores.length + " candidates scored; best " + format(runningMax(data.scores).pop(), 4) +
        (data.uniform !== null && data.uniform !== undefined ? ", uniform merge " + format(data.uniform, 4) : "")
    );
  }

  function show(section, data) {
    function field(name) { return section.querySelector("[data-search-field=" + name + "]"); }
    field("done").textContent = data.done;
    field("budget").textContent = data.budget;
    field("best").textContent = format(data.best, 4);
    field("uniform").textContent = data.uniform === null || data.uniform === undefined ? "" : "(uniform merge: " + format(data.uniform, 4) + ")";
    field("so-far").textContent = data.finished ? "" : " so far";
    field("weights-title").textContent = data.finished ? "Found weights" : "Best weights so far";
    (data.weights || []).forEach(function (weight, i) {
      var cell = section.querySelector('[data-search-weight="' + i + '"]');
      if (cell) cell.textContent = format(weight, 3);
    });
    section.setAttribute("data-finished", data.finished ? "1" : "0");
    draw(section.querySelector('[data-chart="job-search"]'), data);
  }

  function init() {
    var section = document.getElementById("job-search");
    var script = document.getElementById("job-search-data");
    var panel = document.getElementById("job");
    if (!section || !script || !window.Plotly) return; // no plotly.js: the numbers stay
    var data = JSON.parse(script.textContent);
    draw(section.querySelector('[data-chart="job-search"]'), data);
    if (!panel) return; // the adapter's Evaluation tab: a finished search, nothing to follow

    // hub.js polls the job; its progress text and status change when the worker reports candidates.
    var pending = false;
    function refresh() {
      if (pending) return;
      pending = true;
      fetch(panel.getAttribute("data-job-url"), { headers: { Accept: "application/json" }, credentials: "same-origin" })
        .then(function (response) { if (!response.ok) throw new Error(response.status); return response.json(); })
        .then(function (job) { data = fromReport(job.report, data); show(section, data); })
        .catch(function () {})
        .then(function () { pending = false; });
    }
    if (section.getAttribute("data-finished") === "1") return;
    var progress = panel.querySelector("[data-job-field=progress-text]");
    var shown = progress.textContent;
    new MutationObserver(function () {
      // hub.js rewrites the text on every poll: fetch only when the worker reported something new.
      if (progress.textContent === shown) return;
      shown = progress.textContent;
      refresh();
    }).observe(progress, { childList: true, characterData: true, subtree: true });
    new MutationObserver(function () {
      var status = panel.getAttribute("data-job-status");
      if (status === "succeeded" || status === "failed") { pending = false; refresh(); }
    }).observe(panel, { attributes: true, attributeFilter: ["data-job-status"] });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();

/* Adapter Hub — progressive enhancement for the server-rendered pages. Every page works without
 * it; with it: live catalog search, copy buttons, the compose form's search and live check, and a
 * job page that follows its job through the REST API. */
(function () {
  "use strict";

  function debounce(fn, ms) {
    var timer = null;
    return function () {
      var args = arguments, self = this;
      clearTimeout(timer);
      timer = setTimeout(function () { fn.apply(self, args); }, ms);
    };
  }

  function $(selector, root) { return (root || document).querySelector(selector); }
  function $all(selector, root) { return Array.prototype.slice.call((root || document).querySelectorAll(selector)); }

  /* --- Copy buttons: data-copy="text" or data-copy-target="#selector" ---------------------------- */
  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text);
    }
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.style.position = "fixed";
    area.style.opacity = "0";
    document.body.appendChild(area);
    area.select();
    try { document.execCommand("copy"); } finally { document.body.removeChild(area); }
    return Promise.resolve();
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy], [data-copy-target]");
    if (!button) return;
    var text = button.getAttribute("data-copy");
    if (text === null) {
      var target = $(button.getAttribute("data-copy-target"));
      text = target ? target.textContent : "";
    }
    copyText(text.trim()).then(function () {
      var label = button.textContent;
      button.classList.add("copied");
      if (!button.classList.contains("icon")) button.textContent = "Copied";
      setTimeout(function () { button.classList.remove("copied"); button.textContent = label; }, 1400);
    });
  });

  /* --- Confirmations and auto-submitting selects ---------------------------------------------------- */
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-confirm]");
    if (button && !window.confirm(button.getAttribute("data-confirm"))) event.preventDefault();
  });
  document.addEventListener("change", function (event) {
    if (event.target.matches("[data-autosubmit]")) event.target.form.submit();
  });

  /* --- Catalog: results follow the search box as one types ------------------------------------------ */
  function liveSearch(form) {
    var target = $(form.getAttribute("data-live-search"));
    var input = $("input[type=search]", form);
    if (!target || !input) return;
    var controller = null;
    var refresh = debounce(function () {
      var params = new URLSearchParams(new FormData(form));
      Array.from(params.keys()).forEach(function (key) { if (!params.get(key)) params.delete(key); });
      if (params.get("sort") === "downloads") params.delete("sort");
      var url = form.action.split("?")[0] + (params.toString() ? "?" + params.toString() : "");
      if (controller) controller.abort();
      controller = new AbortController();
      target.classList.add("loading");
      fetch(url, { headers: { "X-Partial": "catalog" }, signal: controller.signal, credentials: "same-origin" })
        .then(function (response) { return response.text(); })
        .then(function (html) {
          target.innerHTML = html;
          target.classList.remove("loading");
          history.replaceState(null, "", url);
        })
        .catch(function (error) { if (error.name !== "AbortError") target.classList.remove("loading"); });
    }, 250);
    input.addEventListener("input", refresh);
  }

  /* --- Upload: list the picked files; drop files onto the zone ---------------------------------------- */
  function uploadForm(zone) {
    var inputs = $all("input[type=file]", zone.closest("form"));
    var list = $("[data-picked]", zone);
    function show() {
      list.innerHTML = "";
      inputs.forEach(function (input) {
        Array.prototype.forEach.call(input.files, function (file) {
          var item = document.createElement("li");
          var name = document.createElement("span");
          name.textContent = file.webkitRelativePath || file.name;
          var size = document.createElement("span");
          size.className = "muted";
          size.textContent = file.size < 1024 ? file.size + " B" : (file.size / 1024 < 1024 ? (file.size / 1024).toFixed(1) + " KB" : (file.size / 1048576).toFixed(1) + " MB");
          item.appendChild(name);
          item.appendChild(size);
          list.appendChild(item);
        });
      });
    }
    inputs.forEach(function (input) { input.addEventListener("change", show); });
    ["dragenter", "dragover"].forEach(function (type) {
      zone.addEventListener(type, function (event) { event.preventDefault(); zone.classList.add("dragover"); });
    });
    ["dragleave", "drop"].forEach(function (type) {
      zone.addEventListener(type, function () { zone.classList.remove("dragover"); });
    });
    zone.addEventListener("drop", function (event) {
      event.preventDefault();
      if (event.dataTransfer && event.dataTransfer.files.length) {
        inputs[0].files = event.dataTransfer.files;
        show();
      }
    });
  }

  /* --- Compose: search and add inputs, method parameters, live check ---------------------------------- */
  function composeForm(form) {
    var rows = $("#input-rows", form);
    var template = $("#input-row-template");
    var method = $("#id_method", form);
    var checkResult = $("#check-result");

    function addRow(reference) {
      var empty = $all("input[name=adapter]", rows).filter(function (input) { return !input.value.trim(); })[0];
      if (!empty) {
        rows.appendChild(template.content.cloneNode(true));
        empty = $all("input[name=adapter]", rows).pop();
      }
      if (reference) empty.value = reference;
      empty.focus();
      scheduleCheck();
    }

    $("#add-row", form).addEventListener("click", function () { addRow(""); });
    rows.addEventListener("click", function (event) {
      var button = event.target.closest(".remove-row");
      if (!button) return;
      if ($all(".input-row", rows).length > 1) button.closest("tr").remove();
      else $all("input", button.closest("tr")).forEach(function (input) { input.value = input.name === "weight" ? "1" : ""; });
      scheduleCheck();
    });

    var search = $("#adapter-search");
    var results = $("#adapter-search-results");
    var runSearch = debounce(function () {
      var q = search.value.trim();
      if (!q) { results.innerHTML = ""; return; }
      fetch(search.getAttribute("data-search-url") + "?q=" + encodeURIComponent(q), { credentials: "same-origin" })
        .then(function (response) { return response.text(); })
        .then(function (html) { results.innerHTML = html; });
    }, 200);
    search.addEventListener("input", runSearch);
    search.addEventListener("keydown", function (event) { if (event.key === "Enter") event.preventDefault(); });
    results.addEventListener("click", function (event) {
      var button = event.target.closest("[data-add-adapter]");
      if (!button) return;
      addRow(button.getAttribute("data-add-adapter"));
      results.innerHTML = "";
      search.value = "";
    });

    function showParameters() {
      var option = method.options[method.selectedIndex];
      var uses = { rank: "data-uses-rank", density: "data-uses-density", seed: "data-uses-seed", sign: "data-uses-sign" };
      Object.keys(uses).forEach(function (name) {
        var box = $("[data-param=" + name + "]", form);
        if (box) box.hidden = option.getAttribute(uses[name]) !== "1";
      });
      var summary = $("#method-summary");
      summary.textContent = option.getAttribute("data-summary") + " ";
      var link = document.createElement("a");
      link.href = option.getAttribute("data-reference");
      link.textContent = "paper";
      link.rel = "noopener noreferrer";
      summary.appendChild(link);
    }
    method.addEventListener("change", function () { showParameters(); scheduleCheck(); });
    showParameters();

    var checking = null;
    function runCheck() {
      var data = new FormData(form);
      data.set("action", "check");
      if (checking) checking.abort();
      checking = new AbortController();
      checkResult.classList.add("loading");
      return fetch(form.getAttribute("data-check-url"), { method: "POST", body: data, credentials: "same-origin", signal: checking.signal })
        .then(function (response) { return response.text(); })
        .then(function (html) { checkResult.innerHTML = html; checkResult.classList.remove("loading"); })
        .catch(function (error) { if (error.name !== "AbortError") checkResult.classList.remove("loading"); });
    }
    var scheduleCheck = debounce(function () {
      var filled = $all("input[name=adapter]", rows).some(function (input) { return input.value.trim(); });
      if (filled || $("#id_expression", form).value.trim()) runCheck();
    }, 500);
    form.addEventListener("input", function (event) { if (event.target !== search) scheduleCheck(); });
    $("#check-button", form).addEventListener("click", function (event) { event.preventDefault(); runCheck(); });
  }

  /* --- Job page: follow the job until it finishes ------------------------------------------------------- */
  function followJob(panel) {
    var url = panel.getAttribute("data-job-url");
    var status = $("[data-job-field=status]", panel);
    var progressText = $("[data-job-field=progress-text]", panel);
    var bar = $(".progress-bar", panel);
    var barBox = $(".progress", panel);
    var result = $("[data-job-field=result]", panel);
    var hint = $("[data-job-field=hint]", panel);

    function render(job) {
      status.textContent = job.status;
      status.className = "status status-" + job.status;
      bar.className = "progress-bar status-" + job.status;
      bar.style.width = job.progress + "%";
      barBox.setAttribute("aria-valuenow", job.progress);
      progressText.textContent = job.progress + "%";
      panel.setAttribute("data-job-status", job.status);
      if (job.status === "succeeded" && job.result) {
        result.innerHTML = "";
        var box = document.createElement("p");
        box.className = "msg msg-success";
        box.appendChild(document.createTextNode("Done: "));
        var link = document.createElement("a");
        link.className = "btn";
        link.id = "result-link";
        var parts = job.result.adapter.split("/");
        link.href = "/" + encodeURIComponent(parts[0]) + "/" + encodeURIComponent(parts[1]) + "/?version=" + job.result.version;
        link.textContent = "Open " + job.result.adapter + " v" + job.result.version + " →";
        box.appendChild(link);
        result.appendChild(box);
      } else if (job.status === "failed" && job.error) {
        result.innerHTML = "";
        var error = document.createElement("p");
        error.className = "msg msg-error";
        var code = document.createElement("strong");
        code.textContent = job.error.code;
        error.appendChild(code);
        error.appendChild(document.createTextNode(": " + job.error.message));
        result.appendChild(error);
      }
      if ((job.status === "succeeded" || job.status === "failed") && hint) hint.remove();
    }

    function poll() {
      fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
        .then(function (response) { if (!response.ok) throw new Error(response.status); return response.json(); })
        .then(function (job) {
          render(job);
          if (job.status === "queued" || job.status === "running") setTimeout(poll, 700);
        })
        .catch(function () { setTimeout(poll, 3000); });
    }
    var current = panel.getAttribute("data-job-status");
    if (current === "queued" || current === "running") setTimeout(poll, 300);
  }

  document.addEventListener("DOMContentLoaded", function () {
    $all("form[data-live-search]").forEach(liveSearch);
    $all("[data-dropzone]").forEach(uploadForm);
    var compose = $("#compose-form");
    if (compose) composeForm(compose);
    var job = $("#job[data-job-url]");
    if (job) followJob(job);
  });
})();

// Administrator screens (api/console/admin.py): every change is a call to the JSON API with
// the session's X-CSRF-Token, so the API's own rules apply and its refusals are shown as the
// API words them. No framework: forms and buttons declare the call in data attributes.
//
//   <form data-api-method="POST" data-api-url="/api/v1/companies" data-then="reload">
//     <input name="name">                       a string; left out when empty
//     <input name="floors" data-kind="int">     int | float | bool (checkbox) | list (a, b)
//                                               | nullable (empty: null) | json
//     <p class="error" role="alert"></p> <p class="result" role="status"></p>
//   </form>
//   <button data-api-method="DELETE" data-api-url="/api/v1/tokens/x" data-confirm="Sure?">
//
// data-then: reload | stay | secret (show the answer's data-secret-field once, no reload)
//            | import (the import report: counts and every rejected line with its reason)
"use strict";

(function () {
  const text = JSON.parse(document.getElementById("admin-text")?.textContent || "{}");
  const t = (key, fallback) => text[key] || fallback;

  function csrf() {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  }

  function value(el) {
    const kind = el.dataset.kind || "string";
    if (kind === "bool") return el.checked;
    const raw = el.value.trim();
    if (kind === "nullable") return raw === "" ? null : raw;
    if (raw === "") return undefined;
    if (kind === "int") return Number.parseInt(raw, 10);
    if (kind === "float") return Number.parseFloat(raw);
    if (kind === "list") return raw.split(/[,\s]+/).filter(Boolean);
    if (kind === "json") return JSON.parse(raw);
    return raw;
  }

  // Dotted names build nested objects: filters.codes -> {"filters": {"codes": [...]}}.
  function body(form) {
    const out = {};
    for (const el of form.elements) {
      if (!el.name || el.disabled || (el.type === "radio" && !el.checked)) continue;
      if (el.tagName === "SELECT" && el.multiple) {
        const picked = [...el.selectedOptions].map((o) => o.value);
        set(out, el.name, picked);
        continue;
      }
      const v = value(el);
      if (v !== undefined) set(out, el.name, v);
    }
    return out;
  }

  function set(obj, name, v) {
    const parts = name.split(".");
    let at = obj;
    for (const p of parts.slice(0, -1)) at = at[p] = at[p] || {};
    at[parts[parts.length - 1]] = v;
  }

  function outputs(scope) {
    return {
      error: scope.querySelector(".error"),
      result: scope.querySelector(".result"),
    };
  }

  function say(el, message) {
    if (!el) return;
    el.textContent = message;
    el.hidden = !message;
  }

  async function reason(response) {
    try {
      const answer = await response.json();
      if (answer && answer.error) {
        const detail = (answer.error.detail || [])
          .filter((d) => d && d.field && d.message)
          .map((d) => `${d.field}: ${d.message}`);
        const extra = detail.filter((d) => !answer.error.message.includes(d));
        return [answer.error.message, ...extra].join("; ");
      }
    } catch (_) {
      /* not JSON */
    }
    return response.statusText;
  }

  async function call(method, url, payload, contentType) {
    const headers = { "X-CSRF-Token": csrf(), Accept: "application/json" };
    const init = { method, headers, credentials: "same-origin" };
    if (payload !== undefined) {
      headers["Content-Type"] = contentType || "application/json";
      init.body = contentType ? payload : JSON.stringify(payload);
    }
    return fetch(url, init);
  }

  function showSecret(scope, secret) {
    const box = scope.querySelector(".secret");
    if (!box) return;
    box.querySelector("code").textContent = secret;
    box.hidden = false;
    box.querySelector("code").focus?.();
  }

  function showImport(scope, answer) {
    const box = scope.querySelector(".import-result");
    if (!box) return;
    box.hidden = false;
    box.querySelector(".counts").textContent = t("import_counts", "{i} inserted, {u} updated, {n} unchanged, {r} rejected")
      .replace("{i}", answer.inserted)
      .replace("{u}", answer.updated)
      .replace("{n}", answer.unchanged)
      .replace("{r}", answer.rejected);
    const body = box.querySelector("tbody");
    body.replaceChildren();
    for (const e of answer.errors) {
      const tr = document.createElement("tr");
      for (const cell of [e.line, e.lift_id || "", e.error]) {
        const td = document.createElement("td");
        td.textContent = String(cell);
        tr.append(td);
      }
      body.append(tr);
    }
    box.querySelector("table").hidden = answer.errors.length === 0;
  }

  async function run(scope, method, url, payload, then, contentType) {
    const out = outputs(scope);
    say(out.error, "");
    say(out.result, t("working", "Working…"));
    let response;
    try {
      response = await call(method, url, payload, contentType);
    } catch (err) {
      say(out.result, "");
      say(out.error, t("network", "The server could not be reached") + ": " + err);
      return;
    }
    if (!response.ok) {
      say(out.result, "");
      say(out.error, `${response.status} · ${await reason(response)}`);
      return;
    }
    const answer = response.status === 204 ? null : await response.json().catch(() => null);
    say(out.result, t("done", "Done"));
    if (then === "reload") {
      window.location.reload();
    } else if (then === "secret") {
      showSecret(scope, answer[scope.dataset.secretField || "secret"]);
    } else if (then === "import") {
      showImport(scope, answer);
    } else if (then && then.startsWith("goto:")) {
      window.location.assign(then.slice(5));
    }
  }

  document.addEventListener("submit", (ev) => {
    const form = ev.target.closest("form[data-api-method]");
    if (!form) return;
    ev.preventDefault();
    // The outcome shows in the form, or in the row ([data-scope]) holding the form.
    const scope = form.querySelector(".error") ? form : form.closest("[data-scope]") || form;
    const out = outputs(scope);
    if (form.dataset.then === "import") {
      const file = form.querySelector('input[type="file"]').files[0];
      if (!file) return say(out.error, t("choose_file", "Choose a CSV file first"));
      file.arrayBuffer().then((bytes) =>
        // The raw bytes: the API detects UTF-8 (with or without BOM) or GB18030/GBK.
        run(scope, form.dataset.apiMethod, form.dataset.apiUrl, bytes, "import", "text/csv"),
      );
      return;
    }
    let payload;
    try {
      payload = body(form);
    } catch (err) {
      return say(out.error, String(err));
    }
    run(scope, form.dataset.apiMethod, form.dataset.apiUrl, payload, form.dataset.then);
  });

  document.addEventListener("click", (ev) => {
    const button = ev.target.closest("button[data-api-method]");
    if (!button || button.form?.dataset.apiMethod) return;
    if (button.dataset.confirm && !window.confirm(button.dataset.confirm)) return;
    const scope = button.closest("[data-scope]") || button.parentElement;
    const payload = button.dataset.apiBody ? JSON.parse(button.dataset.apiBody) : undefined;
    run(scope, button.dataset.apiMethod, button.dataset.apiUrl, payload, button.dataset.then || "reload");
  });
})();

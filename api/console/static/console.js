/* liftwatch console: the little our own pages need that no library does — login/logout and
   lifecycle calls of the JSON API with X-CSRF-Token, the countdowns, the tab title, and the
   alert for a new critical alarm (a WebAudio tone and a browser Notification, repeated until
   someone acknowledges it). Live updates themselves are htmx + its SSE extension. */
(function () {
  "use strict";
  var csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";
  var lang = document.body.dataset.lang || "en";
  var baseTitle = document.title;

  // What the page attempted, for people debugging a silent console and for the tests.
  var alerts = (window.liftwatchAlerts = { sounds: 0, notifications: [], errors: [] });

  function api(method, path, body) {
    var headers = { Accept: "application/json" };
    if (csrf) headers["X-CSRF-Token"] = csrf;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    return fetch(path, {
      method: method,
      headers: headers,
      credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    }).then(function (r) {
      if (r.status === 204) return { ok: true, status: 204, data: null };
      return r.json().then(
        function (data) { return { ok: r.ok, status: r.status, data: data, headers: r.headers }; },
        function () { return { ok: r.ok, status: r.status, data: null, headers: r.headers }; }
      );
    });
  }
  function reason(res) {
    var e = res.data && res.data.error;
    return (e && e.message) || "HTTP " + res.status;
  }
  window.liftwatchApi = api;

  // --- login / logout ----------------------------------------------------------------------
  var loginForm = document.getElementById("login-form");
  if (loginForm) {
    loginForm.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var out = document.getElementById("login-error");
      out.textContent = "";
      api("POST", "/api/v1/auth/login", {
        username: loginForm.username.value,
        password: loginForm.password.value,
      }).then(function (res) {
        if (res.ok) {
          window.location.assign(loginForm.dataset.next || "/console/");
          return;
        }
        var text = reason(res);
        var wait = res.headers && res.headers.get("Retry-After");
        out.textContent = text + (wait && text.indexOf(wait) < 0 ? " (" + wait + " s)" : "");
        loginForm.password.select();
      });
    });
  }
  var logout = document.getElementById("logout");
  if (logout) {
    logout.addEventListener("click", function () {
      api("POST", "/api/v1/auth/logout").then(function () {
        window.location.assign("/console/login");
      });
    });
  }

  // --- countdowns and ages ------------------------------------------------------------------
  function fmt(ms) {
    var s = Math.floor(Math.abs(ms) / 1000);
    var h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
    var mm = (m < 10 ? "0" : "") + m, ss = (sec < 10 ? "0" : "") + sec;
    return (h ? h + ":" + mm : m) + ":" + ss;
  }
  var words = lang === "zh-CN"
    ? { left: "剩余 ", over: "已超时 ", ago: "前" }
    : { left: " left", over: "overdue by ", ago: " ago" };
  function tick() {
    var now = Date.now();
    document.querySelectorAll("[data-deadline]").forEach(function (el) {
      var left = Date.parse(el.dataset.deadline) - now;
      var over = left < 0;
      el.classList.toggle("overdue", over);
      el.textContent = over
        ? words.over + fmt(left)
        : (lang === "zh-CN" ? words.left + fmt(left) : fmt(left) + words.left);
    });
    document.querySelectorAll("[data-since]").forEach(function (el) {
      el.textContent = fmt(now - Date.parse(el.dataset.since)) + words.ago;
    });
  }
  setInterval(tick, 1000);
  tick();

  // --- the alarm queue: title, sound, notification -------------------------------------------
  var audio = null;
  function beep() {
    try {
      var Ctx = window.AudioContext || window.webkitAudioContext;
      if (!Ctx) throw new Error("no WebAudio");
      audio = audio || new Ctx();
      if (audio.state === "suspended") audio.resume();
      [0, 0.35].forEach(function (at) {  // two short tones, 880 Hz then 660 Hz
        var osc = audio.createOscillator(), gain = audio.createGain();
        osc.frequency.value = at ? 660 : 880;
        gain.gain.setValueAtTime(0.0001, audio.currentTime + at);
        gain.gain.exponentialRampToValueAtTime(0.4, audio.currentTime + at + 0.02);
        gain.gain.exponentialRampToValueAtTime(0.0001, audio.currentTime + at + 0.3);
        osc.connect(gain).connect(audio.destination);
        osc.start(audio.currentTime + at);
        osc.stop(audio.currentTime + at + 0.32);
      });
      alerts.sounds += 1;
    } catch (e) {
      alerts.errors.push(String(e));
    }
  }
  var shown = {};  // alarm id -> Notification
  function notify(row) {
    var id = row.dataset.alarmId;
    if (shown[id] || !("Notification" in window) || Notification.permission !== "granted") return;
    var cells = row.querySelectorAll("td");
    var title = cells[1] ? cells[1].innerText.trim() : "alarm";
    var body = cells[2] ? cells[2].innerText.trim() : "";
    try {
      var n = new Notification(title, { body: body, tag: id, requireInteraction: true });
      n.onclick = function () { window.focus(); window.location.assign("/console/alarms/" + id); };
      shown[id] = n;
      alerts.notifications.push({ id: id, title: title, body: body });
    } catch (e) {
      alerts.errors.push(String(e));
    }
  }
  var repeat = null;
  function onQueue() {
    var q = document.querySelector(".queue[data-count]");
    if (!q) return;
    var count = parseInt(q.dataset.count, 10) || 0;
    document.title = (count ? "(" + count + ") " : "") + baseTitle;
    var critical = Array.prototype.slice.call(
      q.querySelectorAll('tr.alarm[data-severity="critical"][data-status="open"]')
    );
    var open = {};
    critical.forEach(function (row) { open[row.dataset.alarmId] = true; });
    var fresh = critical.filter(function (row) { return !shown[row.dataset.alarmId] && !alerts["seen:" + row.dataset.alarmId]; });
    fresh.forEach(function (row) { alerts["seen:" + row.dataset.alarmId] = true; notify(row); });
    var announce = document.getElementById("announce");
    if (announce && fresh.length) {  // screen readers hear it too
      var cells = fresh[0].querySelectorAll("td");
      announce.textContent = announce.dataset.new + ": " +
        (cells[1] ? cells[1].innerText.trim() : "") + " — " + (cells[2] ? cells[2].innerText.trim() : "");
    }
    if (fresh.length) beep();
    Object.keys(shown).forEach(function (id) {  // acknowledged (or gone): the alert stops
      if (!open[id]) { shown[id].close(); delete shown[id]; }
    });
    if (critical.length && !repeat) {
      repeat = setInterval(function () {
        var still = document.querySelector('tr.alarm[data-severity="critical"][data-status="open"]');
        if (still) beep(); else { clearInterval(repeat); repeat = null; }
      }, 10000);
    }
  }
  document.body.addEventListener("htmx:afterSwap", function (ev) {
    if (ev.detail.target && ev.detail.target.id === "queue") { onQueue(); tick(); }
  });
  // an alarm's page: its state re-read after any alarm event (a colleague's step)
  function syncButtons() {
    var st = document.getElementById("alarm-status");
    var box = document.querySelector(".actions[data-alarm-id]");
    if (!st || !box) return;
    var status = st.dataset.status;
    if (status === "resolved") { box.hidden = true; return; }
    box.querySelector('[data-step="acknowledge"]').disabled = status !== "open";
    box.querySelector('[data-step="on-site"]').disabled = status === "on_site";
  }
  document.body.addEventListener("htmx:afterSettle", function (ev) {
    if (document.getElementById("alarm-state")) { syncButtons(); tick(); }
  });
  var enable = document.getElementById("enable-alerts");
  function showState() {
    var el = document.getElementById("alerts-state");
    if (el && "Notification" in window) el.textContent = Notification.permission === "granted" ? "✓" : "";
  }
  if (enable) {
    enable.addEventListener("click", function () {
      beep();  // a user gesture: the browser lets the page play sound from now on
      if ("Notification" in window && Notification.permission === "default") {
        Notification.requestPermission().then(showState);
      }
      showState();
    });
    showState();
  }
  if (document.querySelector(".queue[data-count]")) onQueue();
  document.body.addEventListener("htmx:sseOpen", function () {
    var el = document.getElementById("stream-state");
    if (el) el.textContent = "";
  });
  // The stream ends when the session does (logout elsewhere, disabled, expired): rather than
  // show a stale queue, ask who we are and go to the login page if nobody.
  var checking = false;
  document.body.addEventListener("htmx:sseError", function () {
    var el = document.getElementById("stream-state");
    if (el) el.textContent = lang === "zh-CN" ? "实时连接中断，正在重连…" : "Live connection lost, reconnecting…";
    if (checking) return;
    checking = true;
    api("GET", "/api/v1/auth/me").then(function (res) {
      checking = false;
      if (res.status === 401) {
        window.location.assign("/console/login?next=" +
          encodeURIComponent(window.location.pathname + window.location.search));
      }
    }, function () { checking = false; });
  });

  // --- an alarm's lifecycle -----------------------------------------------------------------
  var actions = document.querySelector(".actions[data-alarm-id]");
  if (actions) {
    actions.addEventListener("click", function (ev) {
      var button = ev.target.closest("button[data-step]");
      if (!button) return;
      var step = button.dataset.step;
      var note = document.getElementById("note").value.trim();
      var body = { note: note || null };
      if (step === "resolve") body.outcome = document.getElementById("outcome").value;
      var out = document.getElementById("action-error");
      out.textContent = "";
      button.disabled = true;
      api("POST", "/api/v1/alarms/" + actions.dataset.alarmId + "/" + step, body).then(function (res) {
        if (res.ok) { window.location.reload(); return; }
        button.disabled = false;
        out.textContent = reason(res);
      });
    });
  }

  // --- maintenance windows ------------------------------------------------------------------
  var mw = document.getElementById("mw-form");
  if (mw) {
    mw.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var delay = parseInt(document.getElementById("mw-delay").value, 10) || 0;
      var start = Date.now() + delay * 60000;
      var minutes = parseInt(document.getElementById("mw-minutes").value, 10) || 0;
      var lift = document.getElementById("mw-lift").value;
      api("POST", "/api/v1/lifts/" + encodeURIComponent(lift) + "/maintenance-windows", {
        starts_at: start, ends_at: start + minutes * 60000,
        reason: document.getElementById("mw-reason").value,
      }).then(function (res) {
        if (res.ok) window.location.reload();
        else document.getElementById("mw-error").textContent = reason(res);
      });
    });
  }
  // A running window is ended (its record stays, with its new end); one not begun yet is
  // cancelled (deleted).
  function windowAction(selector, method, suffix) {
    document.querySelectorAll(selector).forEach(function (b) {
      b.addEventListener("click", function () {
        var url = "/api/v1/maintenance-windows/" + b.dataset.windowId + suffix;
        api(method, url).then(function (res) {
          if (res.ok) window.location.reload();
          else document.getElementById("mw-error").textContent = reason(res);
        });
      });
    });
  }
  windowAction("button.mw-end", "POST", "/end");
  windowAction("button.mw-cancel", "DELETE", "");
})();

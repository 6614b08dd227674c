// promptcache dashboard: fetches /dashboard/data and draws it as inline SVG.
// No libraries, no network beyond this origin. Every text from the data goes through
// textContent (feature names come from clients), never through innerHTML.
(function () {
  "use strict";

  var REFRESH_MS = 30000;
  var SVG = "http://www.w3.org/2000/svg";
  var MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

  var params = new URLSearchParams(window.location.search);
  var days = parseInt(params.get("days") || "30", 10);
  if (!(days >= 1 && days <= 366)) days = 30;

  function $(id) { return document.getElementById(id); }

  function el(name, attrs, parent, text) {
    var node = document.createElementNS(SVG, name);
    Object.keys(attrs || {}).forEach(function (key) { node.setAttribute(key, String(attrs[key])); });
    if (text !== undefined) node.textContent = text;
    if (parent) parent.appendChild(node);
    return node;
  }

  function titled(node, text) { el("title", {}, node, text); return node; }

  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }

  function usd(value) {
    if (value === null || value === undefined) return "–";
    if (value === 0) return "$0";
    var digits = Math.abs(value) >= 100 ? 0 : Math.abs(value) >= 1 ? 2 : 4;
    return value.toLocaleString("en-US", {
      style: "currency", currency: "USD",
      minimumFractionDigits: digits, maximumFractionDigits: digits
    });
  }

  function pct(fraction) {
    if (fraction === null || fraction === undefined) return "–";
    return (fraction * 100).toFixed(fraction >= 0.995 || fraction < 0.1 ? 1 : 0) + "%";
  }

  function count(n) { return n.toLocaleString("en-US"); }

  function dayLabel(iso) {
    var parts = iso.split("-");
    return MONTHS[parseInt(parts[1], 10) - 1] + " " + parseInt(parts[2], 10);
  }

  function when(iso) {
    if (!iso) return "";
    var moment = new Date(iso);
    return isNaN(moment.getTime()) ? iso : moment.toLocaleString();
  }

  function shortWhen(iso) {
    var moment = new Date(iso);
    if (isNaN(moment.getTime())) return iso;
    return moment.toLocaleString(undefined, { month: "short", day: "numeric", hour: "numeric", minute: "2-digit" });
  }

  // Axis ticks at round steps (1, 2, 2.5 or 5 times a power of ten) covering `value`.
  function ticks(value, count) {
    if (!(value > 0)) value = 1;
    var raw = value / count;
    var power = Math.pow(10, Math.floor(Math.log10(raw)));
    var step = [1, 2, 2.5, 5, 10].map(function (m) { return m * power; })
      .filter(function (candidate) { return candidate >= raw; })[0];
    var list = [];
    for (var t = 0; t <= Math.ceil(value / step - 1e-9); t++) list.push(t * step);
    return list;
  }

  // Clears the chart and sizes its viewBox to the width it is shown at, so text is drawn
  // at its CSS size however wide the column is. Returns that width.
  function frame(svg, height) {
    clear(svg);
    var width = Math.round(svg.getBoundingClientRect().width) ||
      (svg.parentNode && svg.parentNode.clientWidth) || 900;
    width = Math.max(300, width);
    svg.setAttribute("viewBox", "0 0 " + width + " " + height);
    return width;
  }

  // x positions of n daily slots inside [left, right].
  function slots(n, left, right) {
    var step = (right - left) / n;
    return { step: step, center: function (i) { return left + step * (i + 0.5); } };
  }

  function dayAxis(svg, daily, x, y) {
    var axis = el("g", { "class": "axis" }, svg);
    var every = Math.max(1, Math.ceil(daily.length / 10));
    daily.forEach(function (d, i) {
      if (i % every === 0 || i === daily.length - 1) {
        el("text", { x: x.center(i), y: y, "text-anchor": "middle" }, axis, dayLabel(d.day));
      }
    });
  }

  function costChart(daily) {
    var svg = $("cost-chart");
    var height = 280, left = 70, top = 14, bottom = height - 30;
    var right = frame(svg, height) - 16;
    var marks = ticks(Math.max.apply(null, daily.map(function (d) {
      return Math.max(d.baseline_usd, d.cost_usd);
    })), 4);
    var top_value = marks[marks.length - 1];
    var x = slots(daily.length, left, right);
    function y(v) { return bottom - (v / top_value) * (bottom - top); }
    var axis = el("g", { "class": "axis" }, svg);
    marks.forEach(function (value) {
      el("line", { "class": "grid", x1: left, x2: right, y1: y(value), y2: y(value) }, axis);
      el("text", { x: left - 8, y: y(value) + 4, "text-anchor": "end" }, axis, usd(value));
    });
    var base = daily.map(function (d, i) { return x.center(i).toFixed(1) + "," + y(d.baseline_usd).toFixed(1); });
    var cost = daily.map(function (d, i) { return x.center(i).toFixed(1) + "," + y(d.cost_usd).toFixed(1); });
    el("polygon", { "class": "gap", points: base.concat(cost.slice().reverse()).join(" ") }, svg);
    el("polyline", { "class": "series-baseline", points: base.join(" ") }, svg);
    el("polyline", { "class": "series-cost", points: cost.join(" ") }, svg);
    daily.forEach(function (d, i) {
      titled(el("circle", { "class": "point-cost", cx: x.center(i), cy: y(d.cost_usd), r: 3 }, svg),
        d.day + ": spent " + usd(d.cost_usd) + ", without promptcache " + usd(d.baseline_usd) +
        ", saved " + usd(d.saved_usd) + " (" + count(d.requests) + " requests)");
    });
    dayAxis(svg, daily, x, height - 10);
  }

  function hitChart(daily) {
    var svg = $("hit-chart");
    var height = 200, left = 70, top = 10, bottom = height - 30;
    var right = frame(svg, height) - 16;
    var x = slots(daily.length, left, right);
    var span = bottom - top;
    var axis = el("g", { "class": "axis" }, svg);
    [0, 0.5, 1].forEach(function (f) {
      var yy = bottom - f * span;
      el("line", { "class": "grid", x1: left, x2: right, y1: yy, y2: yy }, axis);
      el("text", { x: left - 8, y: yy + 4, "text-anchor": "end" }, axis, f * 100 + "%");
    });
    var width = Math.max(1, x.step * 0.72);
    daily.forEach(function (d, i) {
      var looked = d.hits_exact + d.hits_semantic + d.misses;
      if (looked === 0) return;
      var y = bottom;
      [["exact", d.hits_exact], ["semantic", d.hits_semantic], ["miss", d.misses]].forEach(function (part) {
        if (part[1] === 0) return;
        var h = (part[1] / looked) * span;
        y -= h;
        titled(el("rect", {
          "class": "bar-" + part[0], x: (x.center(i) - width / 2).toFixed(1), y: y.toFixed(1),
          width: width.toFixed(1), height: h.toFixed(1)
        }, svg), d.day + ": " + part[0] + " " + count(part[1]) + " of " + count(looked) +
          " (" + pct(part[1] / looked) + ")");
      });
    });
    dayAxis(svg, daily, x, height - 10);
  }

  function barList(svg, rows, emptyText) {
    var row = 28;
    var height = Math.max(1, rows.length) * row + 8;
    var width = frame(svg, height);
    var labelWidth = Math.min(190, Math.round(width * 0.3)), right = width - 150;
    if (rows.length === 0) {
      el("text", { x: 0, y: 18, "class": "muted" }, svg, emptyText);
      return;
    }
    var top_value = Math.max.apply(null, rows.map(function (r) { return Math.max(r.baseline_usd, r.cost_usd); })) || 1;
    function w(v) { return Math.max(0, (v / top_value) * (right - labelWidth)); }
    rows.forEach(function (r, i) {
      var y = 4 + i * row;
      var name = r.name === null || r.name === undefined ? "(none)" : String(r.name);
      // The full name as a tooltip on a group, so the label's own text stays the name.
      var group = titled(el("g", {}, svg), name);
      el("text", { "class": "label", x: labelWidth - 10, y: y + 17, "text-anchor": "end" }, group,
        name.length > 26 ? name.slice(0, 25) + "…" : name);
      titled(el("rect", { "class": "bar-baseline", x: labelWidth, y: y + 3, width: w(r.baseline_usd).toFixed(1), height: row - 8 }, svg),
        name + ": without promptcache " + usd(r.baseline_usd));
      titled(el("rect", { "class": "bar-cost", x: labelWidth, y: y + 3, width: w(r.cost_usd).toFixed(1), height: row - 8 }, svg),
        name + ": spent " + usd(r.cost_usd) + " over " + count(r.requests) + " requests");
      el("text", { "class": "value", x: right + 8, y: y + 17 }, svg,
        usd(r.cost_usd) + " of " + usd(r.baseline_usd));
    });
  }

  function budgets(list) {
    var svg = $("budget-chart");
    $("budgets-empty").hidden = list.length > 0;
    if (list.length === 0) svg.setAttribute("hidden", ""); else svg.removeAttribute("hidden");
    var row = 46, left = 0;
    var right = frame(svg, Math.max(1, list.length) * row);
    list.forEach(function (b, i) {
      var y = i * row;
      var fraction = b.fraction === null ? 0 : b.fraction;
      var held = b.held_usd && b.limit_usd ? b.held_usd : 0;
      var head = b.name + ": " + usd(b.spent_usd) + " of " + usd(b.limit_usd) + " (" + pct(b.fraction) + ")";
      var resets = b.resets_at ? ", resets " + when(b.resets_at) : "";
      var label = head + (held ? " + " + usd(held) + " held" : "") +
        (b.resets_at ? ", resets " + shortWhen(b.resets_at) : "");
      var text = head + (held ? ", and " + usd(held) + " held by requests in flight" : "") + resets;
      el("text", { "class": "label", x: left, y: y + 14 }, svg, label);
      el("rect", { "class": "bar-track", x: left, y: y + 20, width: right - left, height: 14, rx: 3 }, svg);
      var state = fraction >= 1 ? " over" : fraction >= 0.8 ? " warn" : "";
      var spentWidth = (right - left) * Math.min(1, Math.max(0, fraction));
      titled(el("rect", {
        "class": "bar-budget" + state, x: left, y: y + 20, rx: 3, height: 14,
        width: spentWidth.toFixed(1)
      }, svg), text);
      if (held) {
        var heldWidth = Math.min((right - left) - spentWidth, (right - left) * held / b.limit_usd);
        if (heldWidth > 0) {
          titled(el("rect", {
            "class": "bar-held", x: (left + spentWidth).toFixed(1), y: y + 20, rx: 3, height: 14,
            width: heldWidth.toFixed(1)
          }, svg), text);
        }
      }
    });
  }

  function alerts(list) {
    var body = document.querySelector("#alerts tbody");
    clear(body);
    $("alerts-empty").hidden = list.length > 0;
    $("alerts").hidden = list.length === 0;
    list.forEach(function (a) {
      var tr = document.createElement("tr");
      [when(a.created_at), a.kind, a.scope, a.message].forEach(function (value) {
        var td = document.createElement("td");
        td.textContent = value;
        tr.appendChild(td);
      });
      body.appendChild(tr);
    });
  }

  function summary(data) {
    var s = data.summary;
    $("t-cost").textContent = usd(s.cost_usd);
    $("t-baseline").textContent = usd(s.baseline_usd);
    $("t-saved").textContent = usd(s.saved_usd);
    $("t-saved-pct").textContent = s.saved_fraction === null ? "" : pct(s.saved_fraction) + " of baseline";
    $("t-hit-rate").textContent = pct(s.hit_rate);
    $("t-hits").textContent = count(s.hits_exact) + " exact, " + count(s.hits_semantic) + " semantic, " +
      count(s.misses) + " misses";
    $("t-requests").textContent = count(s.requests);
    $("t-other").textContent = count(s.bypasses) + " bypassed, " + count(s.errors) + " errors";
    var sources = s.saved_by_source_usd;
    $("sources").textContent = "Saved by source: " + Object.keys(sources).map(function (k) {
      return k.replace("_", " ") + " " + usd(sources[k]);
    }).join(" · ");
    var unpriced = $("unpriced");
    unpriced.hidden = s.unpriced_models.length === 0;
    unpriced.textContent = "No price for: " + s.unpriced_models.join(", ") +
      ". Their requests claim no cost and no saving; add them to the price table.";
    document.querySelectorAll(".days").forEach(function (n) { n.textContent = String(data.days); });
    $("tz").textContent = data.timezone;
  }

  function render(data) {
    summary(data);
    costChart(data.daily);
    hitChart(data.daily);
    barList($("model-chart"), data.by_model, "No requests in this window.");
    barList($("feature-chart"), data.by_feature, "No requests in this window.");
    budgets(data.budgets);
    alerts(data.alerts);
  }

  function status(text, isError) {
    var node = $("status");
    node.textContent = text;
    node.className = isError ? "error" : "";
  }

  var refreshes = 0;
  var shown = null;
  var resizing = null;

  // Charts are sized to their columns: redraw the last data when the window changes size.
  window.addEventListener("resize", function () {
    window.clearTimeout(resizing);
    resizing = window.setTimeout(function () { if (shown) render(shown); }, 150);
  });

  function refresh() {
    return fetch("/dashboard/data?days=" + days, { credentials: "same-origin", cache: "no-store" })
      .then(function (response) {
        if (response.status === 401 || response.status === 403) {
          throw new Error("access expired: open /dashboard?key=ADMIN_KEY again");
        }
        if (!response.ok) throw new Error("the service answered " + response.status);
        return response.json();
      })
      .then(function (data) {
        render(data);
        shown = data;
        refreshes += 1;
        document.body.setAttribute("data-refreshes", String(refreshes));
        status("Updated " + new Date().toLocaleTimeString() + " · data as of " + when(data.generated_at), false);
      })
      .catch(function (error) {
        status("Could not refresh: " + error.message + " (showing the last data)", true);
      })
      .then(function () { window.setTimeout(refresh, REFRESH_MS); });
  }

  refresh();
})();

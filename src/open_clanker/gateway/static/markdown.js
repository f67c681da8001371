// Open Clanker web chat: a model's Markdown turned into safe DOM, with the vendored markdown-it
// (vendor/markdown-it.min.js) and highlight.js (vendor/highlight.min.js).
// markdown-it passes no raw HTML (html: false) and only http/https/mailto links; its output is
// still parsed in an inert <template> and rebuilt through an allowlist of elements and
// attributes, so nothing else can reach the page. No inline style is ever produced (the page's
// Content-Security-Policy forbids it): table alignment becomes a class.
"use strict";

(() => {
  const SAFE_LINK = /^(https?:|mailto:)/i;

  function highlight(code, lang) {
    const hljs = window.hljs;
    if (!hljs || !lang || !hljs.getLanguage(lang)) return ""; // markdown-it escapes it then
    try {
      return hljs.highlight(code, { language: lang, ignoreIllegals: true }).value;
    } catch (_) {
      return "";
    }
  }

  const md = window.markdownit({
    html: false,
    linkify: true,
    breaks: true, // chat text: a single newline is a line break
    typographer: false,
    highlight,
  });
  md.validateLink = (url) => SAFE_LINK.test(String(url).trim());

  // Table alignment arrives as style="text-align:…"; a class says the same without inline style.
  md.core.ruler.push("align_as_class", (state) => {
    for (const token of state.tokens) {
      if (token.type !== "th_open" && token.type !== "td_open") continue;
      const style = token.attrGet("style") || "";
      const align = /text-align:\s*(left|center|right)/.exec(style);
      token.attrs = (token.attrs || []).filter(([name]) => name !== "style");
      if (align) token.attrJoin("class", "align-" + align[1]);
    }
  });

  // Images would be fetched from wherever the model says: shown as a link instead.
  md.renderer.rules.image = (tokens, idx) => {
    const token = tokens[idx];
    const src = token.attrGet("src") || "";
    const label = md.utils.escapeHtml(token.content || src);
    return SAFE_LINK.test(src) ? '<a href="' + md.utils.escapeHtml(src) + '">' + label + "</a>" : label;
  };

  const KEEP = new Set([
    "P", "BR", "HR", "STRONG", "EM", "S", "DEL", "CODE", "PRE", "BLOCKQUOTE", "UL", "OL", "LI",
    "H1", "H2", "H3", "H4", "H5", "H6", "TABLE", "THEAD", "TBODY", "TR", "TH", "TD", "A", "SPAN",
  ]);
  const CLASS_OK = {
    CODE: /^language-[\w+#.-]{1,40}$/,
    SPAN: /^hljs-[\w-]{1,40}$/,
    TH: /^align-(left|center|right)$/,
    TD: /^align-(left|center|right)$/,
  };

  function safeHref(href) {
    if (!SAFE_LINK.test(href || "")) return null;
    try {
      const url = new URL(href);
      return ["http:", "https:", "mailto:"].includes(url.protocol) ? url.href : null;
    } catch (_) {
      return null;
    }
  }

  // Rebuild `from`'s children under `to` with fresh elements: only KEEP tags, only the
  // attributes below; any other element gives up its tag and keeps its text.
  function copyClean(from, to) {
    for (const node of from.childNodes) {
      if (node.nodeType === Node.TEXT_NODE) {
        to.append(node.data);
        continue;
      }
      if (node.nodeType !== Node.ELEMENT_NODE) continue;
      const tag = node.tagName.toUpperCase();
      if (!KEEP.has(tag)) {
        copyClean(node, to);
        continue;
      }
      let el;
      if (tag === "A") {
        const href = safeHref(node.getAttribute("href"));
        if (!href) {
          copyClean(node, to);
          continue;
        }
        el = document.createElement("a");
        el.href = href;
        el.target = "_blank";
        el.rel = "noopener noreferrer";
      } else {
        el = document.createElement(tag.toLowerCase());
      }
      const pattern = CLASS_OK[tag];
      if (pattern) {
        for (const name of (node.getAttribute("class") || "").split(/\s+/)) {
          if (name && pattern.test(name)) el.classList.add(name);
        }
      }
      if (tag === "OL" && /^\d{1,9}$/.test(node.getAttribute("start") || "")) {
        el.start = parseInt(node.getAttribute("start"), 10);
      }
      copyClean(node, el);
      to.append(el);
    }
  }

  function codeBlock(pre) {
    const code = pre.querySelector("code");
    const lang = code && [...code.classList].find((c) => c.startsWith("language-"));
    const wrap = document.createElement("div");
    wrap.className = "code-block";
    const bar = document.createElement("div");
    bar.className = "code-bar";
    const label = document.createElement("span");
    label.textContent = lang ? lang.slice("language-".length) : "code";
    const copy = document.createElement("button");
    copy.type = "button";
    copy.className = "copy";
    copy.textContent = "Copy";
    copy.setAttribute("aria-label", "Copy code");
    copy.addEventListener("click", () => copyText(pre, copy));
    if (code && lang) code.classList.add("hljs");
    bar.append(label, copy);
    pre.replaceWith(wrap);
    wrap.append(bar, pre);
  }

  async function copyText(pre, button) {
    const text = pre.textContent.replace(/\n$/, ""); // the fence's own line end
    let done = false;
    try {
      await navigator.clipboard.writeText(text);
      done = true;
    } catch (_) {
      // Not a secure context (http on a LAN address): select the code and copy that.
      const range = document.createRange();
      range.selectNodeContents(pre);
      const selection = getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      try {
        done = document.execCommand("copy");
      } catch (_) {
        done = false;
      }
    }
    button.textContent = done ? "Copied" : "Press Ctrl+C";
    setTimeout(() => (button.textContent = "Copy"), 1500);
  }

  function render(text, parent) {
    const template = document.createElement("template"); // inert: nothing in it loads or runs
    template.innerHTML = md.render(text);
    const out = document.createDocumentFragment();
    copyClean(template.content, out);
    for (const pre of out.querySelectorAll("pre")) codeBlock(pre);
    for (const table of out.querySelectorAll("table")) {
      const scroller = document.createElement("div");
      scroller.className = "table-wrap";
      table.replaceWith(scroller);
      scroller.append(table);
    }
    parent.append(out);
  }

  window.OpenClankerMarkdown = { render };
})();

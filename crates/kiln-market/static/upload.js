// The upload form: creates the entry, then sends the file through the
// resumable upload session API (POST .../uploads, PATCH chunks with
// Content-Range, PUT to finish) with a progress bar. Every call carries the
// page's CSRF token; the session cookie authenticates it.
"use strict";
(() => {
  const form = document.getElementById("upload-form");
  if (!form) return;
  const chunkSize = Number(form.dataset.chunk);
  const csrf = form.dataset.csrf;
  const bar = document.getElementById("progress");
  const text = document.getElementById("progress-text");
  const message = document.getElementById("upload-message");
  const button = document.getElementById("upload-button");

  function show(done, total) {
    const pct = total > 0 ? Math.floor((done * 100) / total) : 100;
    bar.value = pct;
    text.textContent = pct + "%";
  }

  async function errorOf(response) {
    try {
      const body = await response.json();
      if (body && body.error) return body.error;
    } catch (_) { /* not JSON */ }
    return response.status + " " + response.statusText;
  }

  async function api(method, url, body, contentType) {
    const headers = { "X-CSRF-Token": csrf };
    if (contentType) headers["Content-Type"] = contentType;
    const r = await fetch(url, { method, body, headers, credentials: "same-origin" });
    if (!r.ok) throw new Error(await errorOf(r));
    return r.json();
  }

  // One chunk with XMLHttpRequest, for progress within the chunk. Resolves to
  // the session's offset after it (a 416 tells the real offset: resume there).
  function sendChunk(sid, blob, start, total) {
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open("PATCH", "/api/v1/uploads/" + sid);
      xhr.setRequestHeader("X-CSRF-Token", csrf);
      xhr.setRequestHeader("Content-Type", "application/octet-stream");
      xhr.setRequestHeader("Content-Range", "bytes " + start + "-" + (start + blob.size - 1) + "/*");
      xhr.upload.onprogress = (ev) => show(start + ev.loaded, total);
      xhr.onload = () => {
        const offset = Number(xhr.getResponseHeader("Kiln-Upload-Offset"));
        if (xhr.status === 202 || xhr.status === 416) return resolve(offset);
        let msg = xhr.status + " " + xhr.statusText;
        try { msg = JSON.parse(xhr.responseText).error || msg; } catch (_) { /* not JSON */ }
        reject(new Error(msg));
      };
      xhr.onerror = () => reject(new Error("network error"));
      xhr.send(blob);
    });
  }

  function metadata(file) {
    const data = new FormData(form);
    const meta = { title: data.get("title").trim(), bytes: file.size };
    for (const k of ["description", "version", "series", "os", "os_version", "arch", "catalogue"]) {
      const v = (data.get(k) || "").trim();
      if (v) meta[k] = v;
    }
    const tags = (data.get("tags") || "").split(",").map((t) => t.trim()).filter(Boolean);
    if (tags.length) meta.tags = tags;
    return meta;
  }

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const file = document.getElementById("file").files[0];
    if (!file) return;
    button.disabled = true;
    document.getElementById("upload-status").hidden = false;
    message.textContent = "Uploading…";
    show(0, file.size);
    try {
      const entry = await api("POST", "/api/v1/entries", JSON.stringify(metadata(file)), "application/json");
      const session = await api("POST", "/api/v1/entries/" + entry.id + "/uploads");
      let offset = session.offset;
      while (offset < file.size) {
        const end = Math.min(offset + chunkSize, file.size);
        offset = await sendChunk(session.id, file.slice(offset, end), offset, file.size);
        show(offset, file.size);
      }
      message.textContent = "Verifying and inspecting…";
      const done = await api("PUT", "/api/v1/uploads/" + session.id + "?size=" + file.size);
      show(file.size, file.size);
      message.textContent = "Published: ";
      const link = document.createElement("a");
      link.id = "published";
      link.href = "/entries/" + done.id;
      link.textContent = done.title + " (" + (done.format || "?") + ")";
      message.appendChild(link);
    } catch (e) {
      message.textContent = "Upload failed: " + e.message;
      message.className = "error";
      button.disabled = false;
    }
  });
})();

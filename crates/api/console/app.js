// coop console: a client of the public /v1 API, like the CLI.
//
// The token lives in the tab's session storage and goes out only in the
// Authorization header (never in a URL, never in a cookie). Every value
// from the API reaches the page as text (`h` below builds elements and
// text nodes; nothing is parsed as HTML), so names and keys cannot inject
// markup. The server's Content-Security-Policy allows this file and the
// style sheet only.

const TOKEN_KEY = "coop-token";
const REFRESH_MS = 5000;

// ---------------------------------------------------------------- helpers

/** An element with attributes (`on*` are listeners) and children (strings become text). */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else if (value === true) {
      el.setAttribute(key, "");
    } else {
      el.setAttribute(key, String(value));
    }
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

const $ = (id) => document.getElementById(id);

function bytes(n) {
  if (n === null || n === undefined) return "";
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let v = Number(n);
  let i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return (i === 0 ? String(Math.round(v * 10) / 10) : v.toFixed(v < 10 ? 1 : 0)) + " " + units[i];
}

function ago(unixSecs) {
  if (!unixSecs) return "";
  const s = Math.max(0, Math.round(Date.now() / 1000 - unixSecs));
  if (s < 90) return s + " s ago";
  if (s < 5400) return Math.round(s / 60) + " min ago";
  if (s < 172800) return Math.round(s / 3600) + " h ago";
  return Math.round(s / 86400) + " d ago";
}

function duration(secs) {
  if (secs === null || secs === undefined) return "";
  if (secs < 120) return secs + " s";
  if (secs < 7200) return Math.round(secs / 60) + " min";
  if (secs < 172800) return Math.round(secs / 3600) + " h";
  return Math.round(secs / 86400) + " d";
}

const state = (word) => h("span", { class: "state " + String(word).toLowerCase() }, word);
const short = (id) => String(id || "").slice(0, 10);

function table(headers, rows, empty = "none yet") {
  if (!rows.length) return h("p", { class: "muted" }, empty);
  return h("div", { class: "table-wrap" },
    h("table", {},
      h("thead", {}, h("tr", {}, headers.map((x) => h("th", { scope: "col" }, x)))),
      h("tbody", {}, rows)));
}

function card(label, value, extra) {
  return h("div", { class: "card" }, h("div", { class: "label" }, label), h("div", { class: "value" }, value), extra);
}

// -------------------------------------------------------------------- API

class Unauthorized extends Error {}

function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

/** Calls the API; JSON in and out unless `body` is a Blob. */
async function api(method, path, body) {
  const headers = { Authorization: "Bearer " + token() };
  let payload;
  if (body instanceof Blob) {
    payload = body;
    headers["Content-Type"] = "application/octet-stream";
  } else if (body !== undefined) {
    payload = JSON.stringify(body);
    headers["Content-Type"] = "application/json";
  }
  const response = await fetch(path, { method, headers, body: payload, cache: "no-store" });
  const text = await response.text();
  let data = text;
  try { data = text ? JSON.parse(text) : null; } catch { /* plain text */ }
  if (response.status === 401) {
    throw new Unauthorized((data && data.message) || "the token was refused");
  }
  if (!response.ok) {
    throw new Error((data && data.message) || `${response.status} ${response.statusText}`);
  }
  return data;
}

const get = (path) => api("GET", path);
const enc = encodeURIComponent;

/** Peer id to name, from the last peers list. */
let peerNames = new Map();
async function loadPeers() {
  const peers = await get("/v1/peers");
  peerNames = new Map(peers.map((p) => [p.id, p.name]));
  return peers;
}
const peerName = (id) => peerNames.get(id) || short(id);

// ----------------------------------------------------------- login, brand

function showLogin(reason) {
  sessionStorage.removeItem(TOKEN_KEY);
  $("login").hidden = false;
  $("login-reason").textContent = reason || "";
  $("nav").hidden = true;
  $("logout").hidden = true;
  $("main").replaceChildren();
  $("banner").hidden = true;
  $("token").focus();
}

function showApp() {
  $("login").hidden = true;
  $("nav").hidden = false;
  $("logout").hidden = false;
}

/** Shows the cloud's brand (open to anyone: the login page has it too). */
async function applyBrand() {
  let brand = { name: "coop" };
  try {
    const response = await fetch("/v1/brand", { cache: "no-store" });
    if (response.ok) brand = await response.json();
  } catch { /* keep the default */ }
  $("brand-name").textContent = brand.name;
  document.title = brand.name;
  if (brand.color && /^#[0-9a-fA-F]{3}([0-9a-fA-F]{3})?$/.test(brand.color)) {
    document.documentElement.style.setProperty("--accent", brand.color);
  } else {
    document.documentElement.style.removeProperty("--accent");
  }
  const url = brand.url;
  $("brand").setAttribute("href", url && /^https?:\/\//.test(url) ? url : "#/overview");
  // A fresh address each time, so a changed logo shows at once.
  $("brand-mark").replaceChildren(...(brand.logo ? [h("img", { src: `/v1/brand/logo?at=${Date.now()}`, alt: "" })] : []));
}

// ----------------------------------------------------------------- pages

async function overviewPage() {
  const [status, peers, storage, events] = await Promise.all([
    get("/v1/status"), loadPeers(), get("/v1/storage").catch(() => null), get("/v1/events"),
  ]);
  const cloud = status.cloud;
  const zones = new Map();
  for (const p of peers) {
    if (!zones.has(p.zone)) zones.set(p.zone, []);
    zones.get(p.zone).push(p);
  }
  return h("section", {},
    h("h1", {}, cloud.name),
    h("div", { class: "cards" },
      card("Health", state(status.health),
        status.problems.length ? h("ul", { class: "problems" }, status.problems.map((p) => h("li", {}, p))) : null),
      card("Peers up", `${cloud.peers_up} of ${cloud.peers}`),
      card("Leader", cloud.leader ? peerName(cloud.leader) : "none"),
      card("Stewards", cloud.stewards.map(peerName).join(", ")),
      card("Cloud id", h("span", { class: "mono", title: cloud.id }, short(cloud.id))),
      storage ? card("Stored", `${storage.objects} objects, ${bytes(storage.bytes)}`) : null),
    h("h2", {}, "Zones"),
    h("div", { class: "cards" },
      [...zones.entries()].map(([zone, members]) =>
        h("div", { class: "card zone" },
          h("div", { class: "label" }, "zone"),
          h("div", { class: "value" }, zone),
          h("ul", {}, members.map((p) => h("li", {}, p.name, " ", state(p.state))))))),
    h("h2", {}, "The last hour"),
    h("div", { id: "events" },
      table(["when", "what", "about", "message"], events.slice(0, 40).map((e) => h("tr", { "data-event": e.kind },
        h("td", { title: new Date(e.at * 1000).toLocaleString() }, ago(e.at)),
        h("td", {}, state(e.kind)), h("td", {}, e.subject), h("td", {}, e.message))), "nothing happened")));
}

/** CPUs from thousandths of a core. */
const cpus = (milli) => (milli / 1000).toFixed(milli % 1000 === 0 ? 0 : 1);

async function peersPage() {
  const [peers, storage] = await Promise.all([loadPeers(), get("/v1/storage").catch(() => null)]);
  const disksOf = (id) => (storage ? storage.disks.filter((d) => d.peer === id) : []);
  const invite = h("div", {});
  const rows = peers.map((p) => {
    const actions = h("div", { class: "actions" });
    const confirmRevoke = () => {
      actions.replaceChildren(
        h("span", {}, `Revoke ${p.name} for good? `),
        h("button", {
          class: "danger", type: "button",
          onclick: async () => {
            await act(() => api("POST", `/v1/peers/${enc(p.id)}/revoke`));
          },
        }, "Yes, revoke"),
        h("button", { type: "button", onclick: () => render() }, "Cancel"));
    };
    if (p.state !== "revoked" && p.connection !== "self") {
      actions.append(h("button", { class: "danger", type: "button", onclick: confirmRevoke }, "Revoke…"));
    }
    const labels = Object.entries(p.labels || {}).map(([k, v]) => `${k}=${v}`).join(", ");
    return h("tr", { "data-peer": p.name },
      h("td", {}, p.name, h("div", { class: "muted mono" }, short(p.id))),
      h("td", {}, p.zone),
      h("td", {}, state(p.state)),
      h("td", {}, p.connection),
      h("td", { class: "num" }, p.rtt_ms === null ? "" : p.rtt_ms.toFixed(1) + " ms"),
      h("td", {}, p.leader ? "leader" : p.steward ? "steward" : "member"),
      h("td", {}, labels),
      h("td", { class: "num" }, p.cpus),
      h("td", { class: "num" }, bytes(p.memory_bytes)),
      h("td", {}, p.lent
        ? `${cpus(p.held.cpus_milli)} of ${cpus(p.lent.cpus_milli)} CPUs, ${bytes(p.held.memory_bytes)} of ${bytes(p.lent.memory_bytes)}, disk ${bytes(p.held.disk_bytes)} of ${bytes(p.lent.disk_bytes)}`
        : "runs no containers"),
      h("td", {}, disksOf(p.id).map((d) => h("div", { class: "mono" }, `${d.path}: ${bytes(d.used_bytes)} used, ${bytes(d.free_bytes)} free`))),
      h("td", { class: "num" }, p.load.toFixed(2)),
      h("td", {}, p.last_seen_secs === null ? "never" : duration(p.last_seen_secs) + " ago"),
      h("td", {}, actions));
  });
  const ttl = h("select", { name: "ttl" },
    h("option", { value: "3600" }, "1 hour"),
    h("option", { value: "86400" }, "1 day"),
    h("option", { value: "604800" }, "7 days"));
  const createInvite = h("form", {
    class: "inline", id: "invite-form",
    onsubmit: async (ev) => {
      ev.preventDefault();
      try {
        const made = await api("POST", "/v1/invites", { ttl_secs: Number(ttl.value) });
        showSecret(invite, "Invite (shown once; valid until " + new Date(made.expires_at * 1000).toLocaleString() + ")",
          made.token, "coop up --join TOKEN on the new peer");
      } catch (e) { fail(e); }
    },
  }, h("label", {}, "Valid for", ttl), h("button", { class: "primary", type: "submit" }, "Create invite"));
  return h("section", {},
    h("h1", {}, "Peers"),
    table(["name", "zone", "state", "connection", "rtt", "role", "labels", "cpus", "memory", "containers hold of what it lends", "disks", "load", "last seen", ""], rows),
    h("h2", {}, "Invite a peer"),
    createInvite, invite);
}

/** Shows a secret once, with a copy button. */
function showSecret(where, title, secret, hint) {
  const area = h("textarea", { readonly: true, rows: 3, class: "secret-value" }, secret);
  const copied = h("span", { class: "muted" });
  where.replaceChildren(h("div", { class: "secret" },
    h("strong", {}, title),
    area,
    h("div", { class: "actions" },
      h("button", {
        type: "button",
        onclick: async () => {
          try {
            await navigator.clipboard.writeText(secret);
            copied.textContent = " copied";
          } catch {
            area.select();
            copied.textContent = " selected: copy it with your keyboard";
          }
        },
      }, "Copy"), copied),
    hint ? h("p", { class: "muted" }, hint) : null));
  keep = true;
}

async function storagePage() {
  const [storage, buckets, keys] = await Promise.all([
    get("/v1/storage"), get("/v1/buckets"), get("/v1/s3/keys"),
  ]);
  const secret = h("div", {});
  const disks = storage.disks.map((d) => {
    const used = d.total_bytes ? Math.min(100, (100 * (d.total_bytes - d.free_bytes)) / d.total_bytes) : 0;
    const bar = h("span", {});
    bar.style.setProperty("width", used.toFixed(1) + "%");
    return h("tr", {},
      h("td", {}, d.peer_name), h("td", { class: "mono" }, d.path), h("td", {}, state(d.state)),
      h("td", {}, h("div", { class: "bar", title: used.toFixed(0) + "% full" }, bar)),
      h("td", { class: "num" }, bytes(d.used_bytes)), h("td", { class: "num" }, bytes(d.free_bytes)));
  });
  const blocks = storage.blocks;
  const bucketName = h("input", { name: "bucket", placeholder: "name", required: true });
  const keyName = h("input", { name: "key", placeholder: "name", required: true });
  const bucketRows = buckets.map((b) => h("tr", { "data-bucket": b.name },
    h("td", {}, h("a", { href: `#/bucket/${enc(b.name)}` }, b.name)), h("td", {}, b.policy), h("td", {}, b.layout),
    h("td", { class: "num" }, b.objects), h("td", { class: "num" }, bytes(b.bytes)),
    h("td", {}, Object.entries(b.grants || {}).map(([k, v]) => `${k}: ${v}`).join(", ")),
    h("td", {}, h("button", {
      class: "danger", type: "button",
      onclick: () => act(() => api("DELETE", `/v1/buckets/${enc(b.name)}`)),
    }, "Delete"))));
  const keyRows = keys.map((k) => h("tr", {},
    h("td", {}, k.name), h("td", { class: "mono" }, k.id), h("td", {}, ago(k.created_at)),
    h("td", {}, k.create_bucket ? "yes" : "no"),
    h("td", {}, h("button", {
      class: "danger", type: "button",
      onclick: () => act(() => api("DELETE", `/v1/s3/keys/${enc(k.id)}`)),
    }, "Revoke"))));
  return h("section", {},
    h("h1", {}, "Storage"),
    storage.warning ? h("p", { class: "problems" }, storage.warning) : null,
    h("div", { class: "cards" },
      card("Objects", `${storage.objects} in ${storage.buckets} buckets`),
      card("Stored", bytes(storage.bytes)),
      card("Default layout", storage.default_layout, h("div", { class: "muted" }, `${storage.domains} failure domains`)),
      card("Blocks", `${blocks.healthy} healthy`,
        h("div", { class: "muted" }, `${blocks.degraded} degraded, ${blocks.unavailable} unavailable, ${blocks.lost} lost`)),
      card("Repair", storage.repair_pending ? `${storage.repair_pending} pending` : "nothing pending")),
    h("h2", {}, "Disks"),
    table(["peer", "path", "state", "fill", "used", "free"], disks),
    h("h2", {}, "Buckets"),
    table(["name", "policy", "layout", "objects", "size", "grants", ""], bucketRows),
    h("form", {
      class: "inline", id: "bucket-form",
      onsubmit: (ev) => { ev.preventDefault(); act(() => api("POST", "/v1/buckets", { name: bucketName.value.trim() })); },
    }, h("label", {}, "New bucket", bucketName), h("button", { class: "primary", type: "submit" }, "Create bucket")),
    h("h2", {}, "S3 keys"),
    table(["name", "access key", "created", "may create buckets", ""], keyRows),
    h("form", {
      class: "inline", id: "key-form",
      onsubmit: async (ev) => {
        ev.preventDefault();
        try {
          const made = await api("POST", "/v1/s3/keys", { name: keyName.value.trim() });
          showSecret(secret, `Secret of ${made.name} (${made.id}), shown once`, made.secret);
        } catch (e) { fail(e); }
      },
    }, h("label", {}, "New key", keyName), h("button", { class: "primary", type: "submit" }, "Create key")),
    secret);
}

/** One folder of a bucket: sub-folders, objects, upload, download, delete. */
async function bucketPage(path) {
  const slash = path.indexOf("/");
  const name = slash < 0 ? path : path.slice(0, slash);
  const prefix = slash < 0 ? "" : path.slice(slash + 1);
  const listing = await get(`/v1/buckets/${enc(name)}/objects?prefix=${enc(prefix)}`);
  const here = (p) => `#/bucket/${enc(name)}/${enc(p)}`;
  const crumbs = [h("a", { href: `#/bucket/${enc(name)}` }, name)];
  let walked = "";
  for (const part of prefix.split("/").filter((x) => x !== "")) {
    walked += part + "/";
    crumbs.push(" / ", h("a", { href: here(walked) }, part));
  }
  const objectURL = (key) => `/v1/buckets/${enc(name)}/objects/${key.split("/").map(enc).join("/")}`;
  const folders = listing.folders.map((f) => h("tr", { "data-folder": f },
    h("td", {}, h("a", { href: here(f) }, f.slice(prefix.length))), h("td", {}, "folder"), h("td", {}), h("td", {}), h("td", {})));
  const objects = listing.objects.map((o) => {
    const actions = h("div", { class: "actions" },
      h("button", {
        type: "button",
        onclick: () => download(objectURL(o.key), o.key.slice(prefix.length)).catch(fail),
      }, "Download"),
      h("button", {
        class: "danger", type: "button",
        onclick: () => actions.replaceChildren(
          h("span", {}, "Delete for good? "),
          h("button", { class: "danger", type: "button", onclick: () => act(() => api("DELETE", objectURL(o.key))) }, "Yes, delete"),
          h("button", { type: "button", onclick: () => render() }, "Cancel")),
      }, "Delete"));
    return h("tr", { "data-key": o.key },
      h("td", {}, o.key.slice(prefix.length)),
      h("td", { class: "num" }, bytes(o.size)),
      h("td", {}, ago(Math.floor(o.modified_ms / 1000))),
      h("td", {}, o.content_type || ""),
      h("td", {}, actions));
  });
  const file = h("input", { type: "file", name: "file", multiple: true, required: true });
  const progress = h("span", {});
  const uploadForm = h("form", {
    class: "inline", id: "upload-form",
    onsubmit: async (ev) => {
      ev.preventDefault();
      try {
        for (const chosen of file.files) {
          await upload("PUT", objectURL(prefix + chosen.name), chosen, progress, chosen.type);
        }
        render();
      } catch (e) { fail(e); }
    },
  }, h("label", {}, `Upload into ${prefix || "the bucket's top"}`, file),
  h("button", { class: "primary", type: "submit" }, "Upload"), progress);
  return h("section", {},
    h("h1", {}, "Bucket ", crumbs),
    table(["name", "size", "modified", "type", ""], [...folders, ...objects], "nothing here yet"),
    listing.next ? h("p", { class: "muted" }, "More objects follow; the console shows the first 1,000 of a folder.") : null,
    h("h2", {}, "Upload"), uploadForm);
}

/** Fetches with the token and hands the bytes to the browser as a download. */
async function download(path, filename) {
  const response = await fetch(path, { headers: { Authorization: "Bearer " + token() } });
  if (response.status === 401) throw new Unauthorized("the token was refused");
  if (!response.ok) throw new Error(`${response.status} ${response.statusText}`);
  const url = URL.createObjectURL(await response.blob());
  const link = h("a", { href: url, download: filename });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
}

async function templatesPage() {
  const templates = await get("/v1/templates");
  const file = h("input", { type: "file", name: "file", required: true });
  const name = h("input", { name: "name", placeholder: "name", required: true });
  const version = h("input", { name: "version", placeholder: "latest" });
  const progress = h("span", {});
  const rows = templates.map((t) => h("tr", { "data-template": `${t.name}:${t.version}` },
    h("td", {}, h("a", { href: `#/template/${enc(t.name)}/${enc(t.version)}` }, t.name)), h("td", {}, t.version), h("td", { class: "num" }, bytes(t.size_bytes)),
    h("td", {}, t.arch), h("td", {}, t.default_size), h("td", {}, ago(t.imported_at)),
    h("td", {}, t.verified ? "verified" : (t.error || "not verified")),
    h("td", {}, h("button", {
      class: "danger", type: "button",
      onclick: () => act(() => api("DELETE", `/v1/templates/${enc(t.name)}?version=${enc(t.version)}`)),
    }, "Remove"))));
  const importForm = h("form", {
    class: "inline", id: "template-form",
    onsubmit: (ev) => {
      ev.preventDefault();
      const chosen = file.files[0];
      if (!chosen) return;
      let query = `name=${enc(name.value.trim())}`;
      if (version.value.trim()) query += `&version=${enc(version.value.trim())}`;
      upload("POST", `/v1/templates?${query}`, chosen, progress).then(() => render(), fail);
    },
  }, h("label", {}, "Rootfs archive (tar, tar.gz, tar.zst)", file),
  h("label", {}, "Name", name), h("label", {}, "Version", version),
  h("button", { class: "primary", type: "submit" }, "Import"), progress);
  return h("section", {},
    h("h1", {}, "Templates"),
    table(["name", "version", "size", "arch", "default size", "imported", "check", ""], rows),
    h("h2", {}, "Import a template"), importForm);
}

/** One template: everything the API knows of it. */
async function templatePage(path) {
  const slash = path.lastIndexOf("/");
  const name = path.slice(0, slash);
  const version = path.slice(slash + 1);
  const [[t]] = await Promise.all([get(`/v1/templates/${enc(name)}?version=${enc(version)}`), loadPeers()]);
  const fields = [
    ["name", t.name], ["version", t.version], ["description", t.description || ""],
    ["architecture", t.arch], ["default size", t.default_size],
    ["entrypoint", (t.entrypoint || []).join(" ")], ["size", bytes(t.size_bytes)],
    ["content id", h("span", { class: "mono" }, t.content_id)],
    ["imported", `${ago(t.imported_at)} by ${peerName(t.imported_by)}`],
    ["check", t.verified ? "verified" : (t.error || "not verified")],
  ];
  return h("section", {},
    h("h1", {}, "Template ", `${t.name}:${t.version}`),
    h("div", { class: "table-wrap", id: "template" }, h("table", {}, h("tbody", {},
      fields.map(([k, v]) => h("tr", {}, h("th", { scope: "row" }, k), h("td", {}, v)))))),
    h("p", {}, h("a", { href: "#/templates" }, "Back to the templates")));
}

/** A request with upload progress (fetch has none), shown in `where`. */
function upload(method, path, blob, where, contentType) {
  keep = true;
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    const bar = h("progress", { max: blob.size, value: 0 });
    const label = h("span", { class: "muted" }, " starting");
    where.replaceChildren(bar, label);
    xhr.upload.addEventListener("progress", (ev) => {
      bar.value = ev.loaded;
      label.textContent = ` ${bytes(ev.loaded)} of ${bytes(blob.size)}`;
    });
    xhr.addEventListener("load", () => {
      keep = false;
      let data = null;
      try { data = JSON.parse(xhr.responseText); } catch { /* not JSON */ }
      if (xhr.status === 401) reject(new Unauthorized((data && data.message) || "the token was refused"));
      else if (xhr.status >= 400) reject(new Error((data && data.message) || `${xhr.status} ${xhr.statusText}`));
      else { label.textContent = " done"; resolve(data); }
    });
    xhr.addEventListener("error", () => { keep = false; reject(new Error("the upload failed")); });
    xhr.open(method, path);
    xhr.setRequestHeader("Authorization", "Bearer " + token());
    xhr.setRequestHeader("Content-Type", contentType || "application/octet-stream");
    xhr.send(blob);
  });
}

async function containersPage() {
  const [containers, templates] = await Promise.all([get("/v1/containers?all=true"), get("/v1/templates"), loadPeers()]);
  // Usage: each running container's last sample, from its peer's history.
  const hosts = [...new Set(containers.filter((c) => c.state === "running").map((c) => c.peer))];
  const histories = await Promise.all(hosts.map((p) => get(`/v1/history?peer=${enc(p)}`).catch(() => null)));
  const usage = new Map();
  for (const history of histories.filter(Boolean)) {
    for (const [name, points] of Object.entries(history.containers)) {
      const last = points[points.length - 1];
      if (last) usage.set(name, last);
    }
  }
  const rows = containers.map((c) => {
    const running = c.state === "running";
    const post = (what) => () => act(() => api("POST", `/v1/containers/${enc(c.name)}/${what}`));
    return h("tr", { "data-container": c.name },
      h("td", {}, h("a", { href: `#/containers/${enc(c.name)}` }, c.name)),
      h("td", {}, peerName(c.peer)),
      h("td", {}, state(c.state), c.health ? h("div", {}, state(c.health)) : null),
      h("td", {}, c.template),
      h("td", {}, c.ports.join(", ")),
      h("td", { class: "mono" }, c.address || ""),
      h("td", {}, usage.has(c.name) && c.state === "running"
        ? `${percent(usage.get(c.name).cpu_pct)} CPU, ${bytes(usage.get(c.name).memory)}` : ""),
      h("td", {}, running ? duration(c.uptime_secs) : c.exit_code !== null ? `exit ${c.exit_code}` : ""),
      h("td", {}, h("div", { class: "actions" },
        running ? h("button", { type: "button", onclick: post("stop") }, "Stop")
          : h("button", { type: "button", onclick: post("start") }, "Start"),
        h("button", { type: "button", onclick: post("restart") }, "Restart"),
        h("button", {
          class: "danger", type: "button",
          onclick: () => act(() => api("DELETE", `/v1/containers/${enc(c.name)}?force=true`)),
        }, "Remove"))));
  });
  const template = h("select", { name: "template", required: true },
    templates.map((t) => h("option", { value: t.name }, `${t.name}:${t.version}`)));
  const name = h("input", { name: "name", placeholder: "generated" });
  const command = h("input", { name: "command", placeholder: "the template's" });
  const cpus = h("input", { name: "cpus", placeholder: "size's", size: 5 });
  const memory = h("input", { name: "memory", placeholder: "size's", size: 7 });
  const ports = h("input", { name: "ports", placeholder: "8080:80", size: 9 });
  const runForm = h("form", {
    class: "inline", id: "run-form",
    onsubmit: (ev) => {
      ev.preventDefault();
      const request = { template: template.value };
      if (name.value.trim()) request.name = name.value.trim();
      if (command.value.trim()) request.argv = command.value.trim().split(/\s+/);
      if (cpus.value.trim()) request.cpus = cpus.value.trim();
      if (memory.value.trim()) request.memory = memory.value.trim();
      if (ports.value.trim()) request.ports = ports.value.trim().split(/[\s,]+/);
      act(() => api("POST", "/v1/containers", request));
    },
  }, h("label", {}, "Template", template), h("label", {}, "Name", name), h("label", {}, "Command", command),
  h("label", {}, "CPUs", cpus), h("label", {}, "Memory", memory), h("label", {}, "Ports", ports),
  h("button", { class: "primary", type: "submit" }, "Run"));
  return h("section", {},
    h("h1", {}, "Containers"),
    table(["name", "peer", "state", "template", "ports", "address", "usage", "up / exit", ""], rows),
    h("h2", {}, "Run a container"),
    templates.length ? runForm : h("p", { class: "muted" }, "Import a template first."));
}

/** The open log stream, stopped when the page changes. */
let logStream = null;

async function containerPage(name) {
  const [c] = await Promise.all([get(`/v1/containers/${enc(name)}`), loadPeers()]);
  const logs = h("pre", { class: "logs", id: "logs" });
  const fields = [
    ["peer", peerName(c.peer)], ["state", state(c.state)], ["template", c.template],
    ["command", c.argv.join(" ")], ["size", `${c.size}: ${c.cpus_milli / 1000} CPUs, ${bytes(c.memory_bytes)}, disk ${bytes(c.disk_bytes)}`],
    ["address", c.address || ""], ["ports", c.ports.join(", ")], ["restart", c.restart],
    ["started", c.started_at ? ago(c.started_at) : ""], ["health", c.health ? state(c.health) : "no check"],
  ];
  followLogs(name, logs);
  keep = true;
  const terminal = h("div", { id: "terminal" });
  const openShell = h("button", {
    type: "button", class: "primary", id: "open-shell",
    onclick: () => { openShell.disabled = true; openTerminal(name, terminal).catch(fail); },
  }, "Open a shell");
  return h("section", {},
    h("h1", {}, "Container ", c.name),
    h("div", { class: "table-wrap" }, h("table", {}, h("tbody", {},
      fields.map(([k, v]) => h("tr", {}, h("th", { scope: "row" }, k), h("td", {}, v)))))),
    h("h2", {}, "Logs (live)"), logs,
    h("h2", {}, "Terminal"),
    c.state === "running" ? [openShell, terminal] : h("p", { class: "muted" }, "The container is not running."),
    h("p", {}, h("a", { href: "#/containers" }, "Back to the containers")));
}

/** The open terminal's socket, closed when the page changes. */
let terminalSocket = null;

/** A shell in the container, in an xterm.js terminal inside `where`. */
async function openTerminal(name, where) {
  const { Terminal } = await import("/console/vendor/xterm.mjs");
  const term = new Terminal({ rows: 24, cols: 100, cursorBlink: true, scrollback: 2000 });
  term.open(where);
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const url = `${scheme}//${location.host}/v1/containers/${enc(name)}/terminal?rows=${term.rows}&cols=${term.cols}`;
  // The token travels as a subprotocol: a browser sends no Authorization
  // header on a WebSocket, and a URL would carry it into logs.
  const socket = new WebSocket(url, ["coop-exec", "bearer." + token()]);
  socket.binaryType = "arraybuffer";
  if (terminalSocket) terminalSocket.close();
  terminalSocket = socket;
  const encoder = new TextEncoder();
  socket.addEventListener("open", () => term.focus());
  socket.addEventListener("message", (ev) => {
    if (typeof ev.data === "string") {
      let exit = {};
      try { exit = JSON.parse(ev.data); } catch { /* not JSON */ }
      const how = exit.error ? `failed: ${exit.error}` : exit.signal ? `killed by signal ${exit.signal}` : `exited with code ${exit.code}`;
      term.write(`\r\n[the shell ${how}]\r\n`);
    } else {
      term.write(new Uint8Array(ev.data));
    }
  });
  socket.addEventListener("close", (ev) => {
    if (ev.code !== 1000 && ev.code !== 1005) term.write(`\r\n[connection closed: ${ev.reason || ev.code}]\r\n`);
  });
  term.onData((data) => {
    if (socket.readyState === WebSocket.OPEN) socket.send(encoder.encode(data));
  });
  term.onResize(({ rows, cols }) => {
    if (socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify({ resize: [rows, cols] }));
  });
}

/** Streams a container's output into `where` until the page changes. */
async function followLogs(name, where) {
  if (logStream) logStream.abort();
  const controller = new AbortController();
  logStream = controller;
  try {
    const response = await fetch(`/v1/containers/${enc(name)}/logs?follow=true`, {
      headers: { Authorization: "Bearer " + token() }, signal: controller.signal,
    });
    if (!response.ok) {
      where.textContent = `no logs: ${response.status} ${response.statusText}`;
      return;
    }
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      where.append(document.createTextNode(decoder.decode(value, { stream: true })));
      where.scrollTop = where.scrollHeight;
    }
  } catch (e) {
    if (e.name !== "AbortError") where.append(document.createTextNode(`\n[log stream ended: ${e.message}]`));
  }
}

async function environmentsPage() {
  const envs = await get("/v1/environments");
  const rows = envs.map((e) => {
    const desired = e.services.reduce((n, x) => n + x.desired, 0);
    const running = e.services.reduce((n, x) => n + x.running, 0);
    return h("tr", { "data-env": e.name },
      h("td", {}, h("a", { href: `#/environments/${enc(e.name)}` }, e.name)),
      h("td", {}, state(e.phase)),
      h("td", {}, e.services.map((x) => `${x.name} ${x.running}/${x.desired}`).join(", ")),
      h("td", { class: "num" }, `${running} of ${desired}`),
      h("td", {}, ago(e.created_at)));
  });
  const name = h("input", { name: "name", required: true, placeholder: "shop" });
  const blueprint = h("textarea", { name: "blueprint", rows: 12, required: true, placeholder: "services:\n  web:\n    image: busybox\n" });
  const file = h("input", { type: "file", accept: ".yml,.yaml,.txt" });
  file.addEventListener("change", async () => {
    if (file.files[0]) { blueprint.value = await file.files[0].text(); showVars(); }
  });
  const vars = h("div", { class: "inline" });
  const varInputs = new Map();
  const showVars = () => {
    const found = new Set([...blueprint.value.matchAll(/\$\{([A-Za-z_][A-Za-z0-9_]*)/g)].map((m) => m[1]));
    for (const key of [...varInputs.keys()]) if (!found.has(key)) varInputs.delete(key);
    for (const key of found) if (!varInputs.has(key)) varInputs.set(key, h("input", { name: "var-" + key }));
    vars.replaceChildren(...[...varInputs.entries()].map(([k, input]) => h("label", {}, k, input)));
  };
  blueprint.addEventListener("input", showVars);
  const deploy = h("form", {
    id: "deploy-form",
    onsubmit: (ev) => {
      ev.preventDefault();
      const request = { name: name.value.trim(), blueprint: blueprint.value, vars: {}, env_files: {} };
      for (const [k, input] of varInputs) if (input.value !== "") request.vars[k] = input.value;
      act(() => api("POST", "/v1/environments", request), `#/environments/${enc(request.name)}`);
    },
  }, h("div", { class: "inline" }, h("label", {}, "Name", name), h("label", {}, "Blueprint file", file)),
  blueprint, vars, h("button", { class: "primary", type: "submit" }, "Deploy"));
  return h("section", {},
    h("h1", {}, "Environments"),
    table(["name", "phase", "services", "replicas", "created"], rows),
    h("h2", {}, "Deploy a blueprint"), deploy);
}

async function environmentPage(name) {
  const [env] = await Promise.all([get(`/v1/environments/${enc(name)}`), loadPeers()]);
  const replicas = env.replicas.map((r) => h("tr", { "data-replica": r.name },
    h("td", {}, h("a", { href: `#/containers/${enc(r.name)}` }, r.name)),
    h("td", {}, r.owner ? r.owner.service : ""),
    h("td", {}, peerName(r.peer)),
    h("td", {}, state(r.state)),
    h("td", {}, r.health ? state(r.health) : "no check"),
    h("td", { class: "mono" }, (r.networks || []).map((n) => n.address).join(", "))));
  const pending = env.pending.map((p) => h("tr", {},
    h("td", {}, p.name), h("td", {}, p.service),
    h("td", {}, p.peer_name || p.reason || "")));
  const services = env.services.map((s) => {
    const count = h("input", { type: "number", min: 0, value: s.desired, name: "replicas-" + s.name });
    count.style.setProperty("width", "5rem");
    return h("tr", { "data-service": s.name },
      h("td", {}, s.name),
      h("td", { class: "num" }, `${s.running} of ${s.desired}`),
      h("td", { class: "num" }, s.healthy),
      h("td", {}, h("form", {
        class: "inline",
        onsubmit: (ev) => {
          ev.preventDefault();
          act(() => api("POST", `/v1/environments/${enc(name)}/scale`, { services: { [s.name]: Number(count.value) } }));
        },
      }, count, h("button", { type: "submit" }, "Scale"))));
  });
  const events = env.events.slice(-20).reverse().map((e) => h("tr", {},
    h("td", {}, ago(e.at)), h("td", {}, e.kind), h("td", {}, e.replica || e.service || ""), h("td", {}, e.message)));
  const down = h("div", { class: "actions" });
  down.append(h("button", {
    class: "danger", type: "button",
    onclick: () => down.replaceChildren(
      h("span", {}, `Tear down ${name} and all its containers? `),
      h("button", {
        class: "danger", type: "button",
        onclick: () => act(() => api("DELETE", `/v1/environments/${enc(name)}`), "#/environments"),
      }, "Yes, tear down"),
      h("button", { type: "button", onclick: () => render() }, "Cancel")),
  }, "Tear down…"));
  return h("section", {},
    h("h1", {}, "Environment ", env.name, " ", state(env.phase)),
    h("h2", {}, "Services"), table(["service", "running", "healthy", "replicas"], services),
    h("h2", {}, "Replicas"), table(["name", "service", "peer", "state", "health", "address"], replicas),
    pending.length ? [h("h2", {}, "Pending"), table(["replica", "service", "where, or why not"], pending)] : null,
    h("h2", {}, "Events"), table(["when", "what", "replica", "message"], events),
    h("h2", {}, "Tear down"), down);
}

async function networksPage() {
  const [networks] = await Promise.all([get("/v1/networks"), loadPeers()]);
  const sections = networks.map((n) => h("div", { class: "card" },
    h("div", { class: "label" }, n.environment ? `network of environment ${n.environment}` : "network"),
    h("div", { class: "value" }, n.name),
    h("div", { class: "muted" }, `${n.subnet}, gateway ${n.gateway}`),
    h("ul", {}, n.members.map((m) => h("li", {}, `${m.container} ${m.address} on ${peerName(m.peer)}`)))));
  return h("section", {}, h("h1", {}, "Networks"),
    sections.length ? h("div", { class: "cards" }, sections) : h("p", { class: "muted" }, "none yet"));
}

async function settingsPage() {
  const config = await get("/v1/config");
  const fields = [
    ["brand.name", "Name shown in the console and the CLI", "coop"],
    ["brand.color", "Colour, #rgb or #rrggbb", "#2f6f4f"],
    ["brand.url", "Where the name links (http or https)", "https://example.org"],
    ["brand.logo", "Logo: BUCKET/KEY of an image in the cloud", "photos/logo.png"],
  ];
  const inputs = fields.map(([key, label, placeholder]) =>
    [key, h("input", { name: key, value: config[key] || "", placeholder })]);
  const form = h("form", {
    class: "inline", id: "brand-form",
    onsubmit: (ev) => {
      ev.preventDefault();
      act(async () => {
        for (const [key, input] of inputs) {
          const value = input.value.trim();
          if (value) await api("PUT", `/v1/config/${enc(key)}`, { value });
          else if (config[key] !== undefined) await api("DELETE", `/v1/config/${enc(key)}`);
        }
      });
    },
  }, inputs.map(([key, input], i) => h("label", {}, fields[i][1], input)),
  h("button", { class: "primary", type: "submit" }, "Save"));
  const other = Object.entries(config).filter(([k]) => !k.startsWith("brand."));
  return h("section", {},
    h("h1", {}, "Settings"),
    h("h2", {}, "Brand"),
    h("p", { class: "muted" }, "For the whole cloud: every peer's console and CLI show it."),
    form,
    h("h2", {}, "Other settings"),
    table(["key", "value"], other.map(([k, v]) => h("tr", {}, h("td", { class: "mono" }, k), h("td", { class: "mono" }, v)))));
}

/** Loads uPlot (a classic script setting `window.uPlot`) once. */
let uplotLoading = null;
function loadUplot() {
  if (!uplotLoading) {
    uplotLoading = new Promise((resolve, reject) => {
      const script = h("script", { src: "/console/vendor/uplot.min.js" });
      script.addEventListener("load", () => resolve(window.uPlot));
      script.addEventListener("error", () => reject(new Error("cannot load the chart library")));
      document.head.append(script);
    });
  }
  return uplotLoading;
}

const PALETTE = ["#2f6f4f", "#b35c1e", "#3a5fcd", "#a3268c", "#6b8e23", "#c0392b", "#008b8b", "#8b6914"];

/** A line chart of `series` ([label, values]) over `xs` (unix seconds). */
function lineChart(uPlot, title, xs, series, format) {
  const box = h("div", { class: "chart", "data-chart": title });
  // As wide as a cell of the charts' grid (columns of at least 420 px).
  const room = ($("main").clientWidth || 800) - 32;
  const columns = Math.max(1, Math.floor((room + 13) / (420 + 13)));
  const width = Math.max(240, Math.floor((room - (columns - 1) * 13) / columns) - 14);
  const options = {
    title, width, height: 180,
    series: [{}, ...series.map(([label], i) => ({
      label, stroke: PALETTE[i % PALETTE.length], width: 1.5,
      value: (_, v) => (v === null || v === undefined ? "" : format(v)),
    }))],
    axes: [{}, { values: (_, ticks) => ticks.map(format), size: 70 }],
    scales: { y: { range: (_, min, max) => [0, Math.max(max, 1)] } },
  };
  new uPlot(options, [xs, ...series.map(([, values]) => values)], box);
  return box;
}

const perSecond = (v) => bytes(v) + "/s";
const percent = (v) => v.toFixed(v < 10 ? 1 : 0) + " %";

async function chartsPage(peer) {
  const query = peer ? `?peer=${enc(peer)}` : "";
  const [history, uPlot, peers] = await Promise.all([get("/v1/history" + query), loadUplot(), loadPeers()]);
  const samples = history.samples;
  const choose = h("select", {
    id: "chart-peer",
    onchange: (ev) => { location.hash = `#/charts/${enc(ev.target.value)}`; },
  }, peers.filter((p) => p.state !== "revoked").map((p) =>
    h("option", { value: p.name, selected: p.id === history.peer }, p.name)));
  const header = h("div", {},
    h("form", { class: "inline" }, h("label", {}, "Peer", choose)),
    h("p", { class: "muted", id: "chart-about" },
      `${peerName(history.peer)}, one sample every ${history.interval_secs} s over the last hour (kept in memory on that peer).`));
  if (samples.length < 2) {
    return h("section", {}, h("h1", {}, "Charts"), header,
      h("p", { id: "charts-waiting" }, "Collecting: the first points come a few samples after the peer starts."));
  }
  const xs = samples.map((x) => x.at);
  const col = (key) => samples.map((x) => x[key]);
  const charts = [
    lineChart(uPlot, "CPU", xs, [["cpu", col("cpu_pct")]], percent),
    lineChart(uPlot, "Memory", xs, [["used", col("memory_used")], ["total", col("memory_total")]], bytes),
    lineChart(uPlot, "Network", xs, [["in", col("net_rx_bps")], ["out", col("net_tx_bps")]], perSecond),
    lineChart(uPlot, "Disk", xs, [["used by coop", col("disk_used")]], bytes),
    lineChart(uPlot, "S3 requests", xs, [["requests/s", col("s3_requests_ps")]], (v) => v.toFixed(1) + "/s"),
    lineChart(uPlot, "S3 bytes", xs, [["in", col("s3_in_bps")], ["out", col("s3_out_bps")]], perSecond),
  ];
  const names = Object.keys(history.containers);
  const containerCharts = [];
  if (names.length) {
    // Each container's points on the peer's time axis (gaps where it did not run).
    const at = (name, key) => {
      const byTime = new Map(history.containers[name].map((p) => [p.at, p[key]]));
      return xs.map((x) => (byTime.has(x) ? byTime.get(x) : null));
    };
    containerCharts.push(
      lineChart(uPlot, "Containers: CPU (of one CPU)", xs, names.map((n) => [n, at(n, "cpu_pct")]), percent),
      lineChart(uPlot, "Containers: memory", xs, names.map((n) => [n, at(n, "memory")]), bytes));
  }
  return h("section", {}, h("h1", {}, "Charts"), header,
    h("div", { class: "charts", id: "charts" }, charts),
    h("h2", {}, `Containers on ${peerName(history.peer)}`),
    containerCharts.length ? h("div", { class: "charts" }, containerCharts) : h("p", { class: "muted" }, "none ran in the last hour"));
}

// ---------------------------------------------------------------- routing

const routes = {
  overview: overviewPage,
  peers: peersPage,
  storage: storagePage,
  templates: templatesPage,
  containers: containersPage,
  environments: environmentsPage,
  networks: networksPage,
  settings: settingsPage,
  charts: chartsPage,
};

/** While true, the page is not refreshed under the user (a secret shown, an upload, logs). */
let keep = false;

function fail(e) {
  if (e instanceof Unauthorized) {
    showLogin(e.message);
    return;
  }
  const banner = $("banner");
  banner.textContent = e.message;
  banner.hidden = false;
}

/** Runs a change, then shows `then` (or the same page) afresh. */
async function act(change, then) {
  try {
    await change();
    $("banner").hidden = true;
    keep = false;
    if (then && location.hash !== then) location.hash = then;
    else await render();
  } catch (e) {
    fail(e);
  }
}

/** The number of the latest render; an older one still loading is dropped. */
let renderSeq = 0;
/** Whether a render is loading: no refresh starts meanwhile. */
let rendering = false;

async function render(background = false) {
  if (!token()) {
    showLogin("");
    return;
  }
  const seq = ++renderSeq;
  rendering = true;
  const [page, ...rest] = location.hash.replace(/^#\/?/, "").split("/");
  const arg = rest.length ? decodeURIComponent(rest.join("/")) : null;
  let view;
  if (page === "containers" && arg) view = () => containerPage(arg);
  else if (page === "bucket" && arg) view = () => bucketPage(arg);
  else if (page === "charts" && arg) view = () => chartsPage(arg);
  else if (page === "template" && arg) view = () => templatePage(arg);
  else if (page === "environments" && arg) view = () => environmentPage(arg);
  else view = routes[page] || overviewPage;
  for (const link of document.querySelectorAll("nav a")) {
    const section = page === "bucket" ? "storage" : page === "template" ? "templates" : routes[page] ? page : "overview";
    link.classList.toggle("current", link.getAttribute("href") === "#/" + section);
  }
  try {
    if (!background) {
      keep = false;
      if (logStream) { logStream.abort(); logStream = null; }
      if (terminalSocket) { terminalSocket.close(); terminalSocket = null; }
      await applyBrand();
    }
    const content = await view();
    // A newer render (the user went elsewhere meanwhile) shows its own page.
    if (seq !== renderSeq) return;
    showApp();
    if (!background) $("banner").hidden = true;
    $("main").replaceChildren(content);
  } catch (e) {
    if (seq === renderSeq) fail(e);
  } finally {
    if (seq === renderSeq) rendering = false;
  }
}

/** Whether the user is typing into a form on the page. */
function busy() {
  const active = document.activeElement;
  return keep || (active && $("main").contains(active) && ["INPUT", "TEXTAREA", "SELECT"].includes(active.tagName));
}

function start() {
  // `#token=...` logs in at once; the fragment never reaches the server,
  // and is removed from the address bar.
  const fromHash = new URLSearchParams(location.hash.slice(1)).get("token");
  if (fromHash) {
    sessionStorage.setItem(TOKEN_KEY, fromHash);
    history.replaceState(null, "", location.pathname + "#/overview");
  }
  $("login-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
    $("token").value = "";
    $("login-reason").textContent = "";
    render();
  });
  $("logout").addEventListener("click", () => showLogin("Logged out."));
  applyBrand();
  window.addEventListener("hashchange", () => render());
  setInterval(() => {
    if (token() && !busy() && !rendering && document.visibilityState === "visible") render(true);
  }, REFRESH_MS);
  render();
}

start();

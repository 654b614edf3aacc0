// Talking to quire: every call goes to this origin's /graphql or /files with
// the pasted key in x-api-key, so the console can do nothing the key could not
// do with curl. The key lives in this tab's sessionStorage only.

export const KEY_NAME = "quire.apiKey";

export const keyStore = {
  get: () => sessionStorage.getItem(KEY_NAME),
  set: (k) => sessionStorage.setItem(KEY_NAME, k),
  forget: () => sessionStorage.removeItem(KEY_NAME),
};

/** An error from quire: the message and extensions.code of the first error. */
export class QuireError extends Error {
  constructor(message, code, status) {
    super(code ? `${message} (${code})` : message);
    this.code = code;
    this.status = status;
  }
}

/** Listeners told when quire refuses the key (401). */
const unauthorized = [];
export function onUnauthorized(f) { unauthorized.push(f); }

/** Runs one operation; answers { status, data, errors }. */
export async function request(query, variables, accept) {
  const res = await fetch("/graphql", {
    method: "POST",
    headers: {
      "content-type": "application/json",
      accept: accept || "application/graphql-response+json, application/json",
      "x-api-key": keyStore.get() || "",
    },
    body: JSON.stringify({ query, variables: variables || {} }),
  });
  let body = {};
  try { body = await res.json(); } catch { body = { errors: [{ message: `HTTP ${res.status}` }] }; }
  if (res.status === 401) unauthorized.forEach((f) => f());
  return { status: res.status, data: body.data ?? null, errors: body.errors ?? null };
}

/** Runs one operation and answers its data, or throws its first error. */
export async function gql(query, variables) {
  const r = await request(query, variables);
  if (r.errors && r.errors.length) {
    const e = r.errors[0];
    throw new QuireError(e.message, e.extensions?.code, r.status);
  }
  return r.data;
}

/**
 * Which of the given Query fields this server has, without introspection and
 * without running anything: each probe is a field under @skip(if: true), so
 * the operation is only validated. A field the schema lacks is a validation
 * error naming it ("Unknown field"); anything named in an error counts as
 * missing, so a server without the feature simply hides the part.
 */
export async function probe(probes) {
  const selections = Object.entries(probes)
    .map(([name, text]) => `${name}: ${text} @skip(if: true) { __typename }`)
    .join(" ");
  // application/json: a validation error is a 200 with `errors` (GraphQL over
  // HTTP), so probing a server without a feature logs no failed request.
  const r = await request(`query ConsoleProbe { ${selections} }`, {}, "application/json");
  const have = new Set(Object.keys(probes));
  for (const e of r.errors || []) {
    const unknown = /^Unknown field "([^"]+)"/.exec(e.message || "");
    for (const [name, text] of Object.entries(probes)) {
      const field = text.split("(")[0];
      if (unknown ? unknown[1] === field : (e.message || "").includes(`"${field}"`)) have.delete(name);
    }
  }
  if (r.status !== 200 && r.status !== 400) return new Set();
  return have;
}

/** Uploads a file to POST /files with progress (0..1); answers the File. */
export function upload(file, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", `/files?filename=${encodeURIComponent(file.name)}`);
    xhr.setRequestHeader("x-api-key", keyStore.get() || "");
    if (file.type) xhr.setRequestHeader("content-type", file.type);
    xhr.upload.onprogress = (e) => { if (e.lengthComputable) onProgress(e.loaded / e.total); };
    xhr.onload = () => {
      let body = {};
      try { body = JSON.parse(xhr.responseText); } catch { /* not JSON */ }
      if (xhr.status === 201 && body.file) return resolve(body.file);
      const e = body.errors?.[0];
      reject(new QuireError(e?.message ?? `upload failed: HTTP ${xhr.status}`, e?.extensions?.code, xhr.status));
    };
    xhr.onerror = () => reject(new QuireError("upload failed: network error"));
    xhr.send(file);
  });
}

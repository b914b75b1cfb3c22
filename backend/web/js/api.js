// Talks to the Parallax JSON API. Every request carries the API key (when one is stored) as the
// X-API-Key header; a 401 asks the user for the key once and retries. The key is mirrored into the
// `parallax_api_key` cookie, which the server also accepts, because <img>, <video> and download
// links cannot send headers. The cookie holds the key percent-encoded (base64 keys contain `/`, `+`,
// `=`) and the server decodes it. A paired device (/pair) needs neither: its session cookie is
// HttpOnly and set by the server.

const API_KEY_STORAGE = 'parallax.apiKey';
const API_KEY_COOKIE = 'parallax_api_key';

function writeKeyCookie(key) {
  const secure = window.location.protocol === 'https:' ? '; Secure' : '';
  document.cookie = key
    ? `${API_KEY_COOKIE}=${encodeURIComponent(key)}; Path=/; SameSite=Strict; Max-Age=31536000${secure}`
    : `${API_KEY_COOKIE}=; Path=/; SameSite=Strict; Max-Age=0${secure}`;
}

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export function storedApiKey() {
  try {
    return localStorage.getItem(API_KEY_STORAGE) || '';
  } catch {
    return ''; // storage disabled (private mode): behave as if no key is set
  }
}

export function storeApiKey(key) {
  try {
    if (key) localStorage.setItem(API_KEY_STORAGE, key);
    else localStorage.removeItem(API_KEY_STORAGE);
  } catch {
    /* storage disabled: the cookie still carries the key */
  }
  writeKeyCookie(key);
}

// The cookie may have expired or been cleared while localStorage kept the key.
if (storedApiKey() && !document.cookie.split('; ').some((c) => c.startsWith(`${API_KEY_COOKIE}=`))) {
  writeKeyCookie(storedApiKey());
}

function authHeaders() {
  const key = storedApiKey();
  return key ? { 'X-API-Key': key } : {};
}

// Only one prompt at a time, even when several requests fail with 401 together; after a cancel,
// no more prompts on this page (later 401s fail at once and the sign-in banner explains).
let pendingKeyPrompt = null;
let keyPromptDeclined = false;
function askForApiKey() {
  if (keyPromptDeclined) return Promise.resolve(false);
  if (!pendingKeyPrompt) {
    pendingKeyPrompt = Promise.resolve().then(() => {
      const key = window.prompt('This Parallax server needs an API key. Enter it to continue '
        + '(or cancel, and pair this device with a code instead):', '');
      pendingKeyPrompt = null;
      if (key && key.trim()) {
        storeApiKey(key.trim());
        return true;
      }
      keyPromptDeclined = true;
      showSignInBanner();
      return false;
    });
  }
  return pendingKeyPrompt;
}

/** A bar at the top of any page: why nothing loads, and the two ways in. */
function showSignInBanner() {
  if (document.getElementById('sign-in-banner')) return;
  const banner = document.createElement('div');
  banner.id = 'sign-in-banner';
  banner.setAttribute('role', 'alert');
  banner.style.cssText = 'position:fixed;inset:0 0 auto 0;z-index:1000;display:flex;gap:.8rem;align-items:center;'
    + 'flex-wrap:wrap;padding:.7rem 1rem;background:#3a1d1d;color:#fff;font:14px/1.4 system-ui,sans-serif;'
    + 'border-bottom:1px solid #e06666';
  const text = document.createElement('span');
  text.textContent = 'This server needs an API key, or this device must be paired.';
  const enter = document.createElement('button');
  enter.type = 'button';
  enter.textContent = 'Enter API key';
  enter.addEventListener('click', () => {
    keyPromptDeclined = false;
    askForApiKey().then((given) => { if (given) window.location.reload(); });
  });
  const pair = document.createElement('a');
  pair.href = '/pair';
  pair.textContent = 'Pair this device with a code';
  pair.style.color = '#c9ceff';
  banner.append(text, enter, pair);
  document.body.append(banner);
}

async function errorFromResponse(response) {
  let code = `http_${response.status}`;
  let message =
    response.status === 413
      ? 'The file is too large for this server.'
      : response.statusText || `Request failed (${response.status})`;
  try {
    const body = await response.json();
    if (body && body.error) {
      code = body.error.code || code;
      message = body.error.message || message;
    }
  } catch {
    /* not JSON (e.g. a proxy's error page): keep the generic message */
  }
  return new ApiError(response.status, code, message);
}

/**
 * fetch() with the API key, JSON handling and the error envelope turned into ApiError.
 * Returns the parsed JSON body, or the Response itself when `raw` is set.
 */
export async function api(path, { method = 'GET', json, body, raw = false, signal } = {}) {
  for (let attempt = 0; attempt < 2; attempt += 1) {
    const headers = { Accept: 'application/json', ...authHeaders() };
    let payload = body;
    if (json !== undefined) {
      headers['Content-Type'] = 'application/json';
      payload = JSON.stringify(json);
    }
    const response = await fetch(path, { method, headers, body: payload, signal });
    if (response.status === 401 && attempt === 0 && (await askForApiKey())) continue;
    if (response.status === 401) throw unauthorized();
    if (!response.ok) throw await errorFromResponse(response);
    if (raw) return response;
    if (response.status === 204) return null;
    const type = response.headers.get('Content-Type') || '';
    return type.includes('json') ? response.json() : response;
  }
  throw unauthorized();
}

function unauthorized() {
  return new ApiError(401, 'unauthorized', 'This server needs an API key, or this device must be paired (/pair).');
}

/** Upload one file as multipart field "media", reporting upload progress (0..1). */
export function uploadMedia(file, { onProgress } = {}) {
  const send = () =>
    new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open('POST', '/api/media/upload');
      for (const [name, value] of Object.entries(authHeaders())) xhr.setRequestHeader(name, value);
      xhr.setRequestHeader('Accept', 'application/json');
      xhr.upload.addEventListener('progress', (event) => {
        if (onProgress && event.lengthComputable) onProgress(event.loaded / event.total);
      });
      xhr.addEventListener('load', () => {
        let body = null;
        try {
          body = JSON.parse(xhr.responseText);
        } catch {
          /* non-JSON error page from a proxy */
        }
        if (xhr.status >= 200 && xhr.status < 300) return resolve(body);
        const message =
          body?.error?.message ||
          (xhr.status === 413 ? 'The file is too large for this server.' : `Upload failed (${xhr.status})`);
        reject(new ApiError(xhr.status, body?.error?.code || `http_${xhr.status}`, message));
      });
      xhr.addEventListener('error', () => reject(new ApiError(0, 'network', 'Network error during upload.')));
      xhr.addEventListener('abort', () => reject(new ApiError(0, 'aborted', 'Upload cancelled.')));
      xhr.send(formData(file));
    });
  return send().catch(async (error) => {
    if (error.status === 401 && (await askForApiKey())) return send();
    throw error;
  });
}

function formData(file) {
  const data = new FormData();
  data.append('media', file, file.name);
  return data;
}

/**
 * A URL the browser can load into <img>/<video> or hand to three.js. The API URL itself works, key
 * or not (the cookie carries it), and keeps streaming and byte ranges; when the server still
 * refuses it (cookies blocked) the bytes are fetched with the header and exposed as an object URL.
 */
export async function mediaSource(url) {
  if (!storedApiKey() || cookiesWork()) return url;
  return URL.createObjectURL(await fetchBlob(url));
}

function cookiesWork() {
  return document.cookie.split('; ').some((c) => c.startsWith(`${API_KEY_COOKIE}=`));
}

/** Fetch binary media (with the key when set) as a Blob. */
export async function fetchBlob(url) {
  const response = await api(url, { raw: true });
  return response.blob();
}

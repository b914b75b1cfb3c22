// The 3D / VR viewer page (/viewer/<id>). The pieces live in js/viewer/:
//   depth-surface.js  the displaced plane and its shader (edge cut, depth strength)
//   item-view.js      one item on that surface: photo, video + depth frames following its time, RGB-D video,
//                     stereo export (each eye its half), or flat
//   textures.js       decoding off the main thread, device-sized textures, frame preloading
//   desktop-view.js   pointer / touch / wheel camera on a flat screen
//   xr-session.js     whether VR is possible (and why not), Enter VR, the WebXR emulator flag
//   vr-library.js     the in-headset gallery and toolbar, controller rays, hands, thumbstick
//   library.js        the library's pages, newest first, and next / previous
// This file wires them to the page and runs the render loop.
import * as THREE from 'three';
import { formatDuration, idFromPath } from './ui.js';
import { DepthSurface, LEFT_EYE_LAYER } from './viewer/depth-surface.js';
import { DesktopView } from './viewer/desktop-view.js';
import { ItemNotFound, ItemView } from './viewer/item-view.js';
import { Library } from './viewer/library.js';
import { VRLibrary, VR_STAGE } from './viewer/vr-library.js';
import { maybeEmulateXR, offerVR } from './viewer/xr-session.js';

const DEPTH_SCALE_STORAGE = 'parallax.viewer.depthScale';
// Inline SVG so the controls look the same without emoji/symbol fonts.
const ICONS = {
  play: '<svg viewBox="0 0 24 24" width="18" height="18" aria-hidden="true"><path d="M8 5v14l11-7z" fill="currentColor"/></svg>',
  pause: '<svg viewBox="0 0 24 24" width="18" height="18" aria-hidden="true"><path d="M7 5h4v14H7zm6 0h4v14h-4z" fill="currentColor"/></svg>',
  muted: '<svg viewBox="0 0 24 24" width="18" height="18" aria-hidden="true"><path d="M4 9v6h4l5 4V5L8 9zm12.6 3 2.7-2.7-1.1-1.1-2.7 2.7-2.7-2.7-1.1 1.1 2.7 2.7-2.7 2.7 1.1 1.1 2.7-2.7 2.7 2.7 1.1-1.1z" fill="currentColor"/></svg>',
  sound: '<svg viewBox="0 0 24 24" width="18" height="18" aria-hidden="true"><path d="M4 9v6h4l5 4V5L8 9zm11.5 3a4.5 4.5 0 0 0-2.5-4v8a4.5 4.5 0 0 0 2.5-4zM13 3.2v2.1a7 7 0 0 1 0 13.4v2.1a9 9 0 0 0 0-17.6z" fill="currentColor"/></svg>',
};

// State the browser tests read (docs/viewer.md): ready, the manifest, which depth frame
// (manifest `index`) is shown, the item, and in VR the library's mode and targets.
const viewerState = {
  ready: false,
  error: null,
  itemId: null,
  mode: null, // "photo" | "video" | "rgbd-video" | "frames" | "flat-photo" | "flat-video" | "stereo-photo" | "stereo-video"
  stereo: null, // the stereo format shown (?stereo=full_sbs|half_sbs|tb|anaglyph), else null
  depthState: null, // "ready" | "waiting" (job running: shown flat) | "none"
  manifest: null,
  currentDepthIndex: 0,
  loadedDepthFrames: 0,
  video: null,
  xr: { available: null, presenting: false, emulated: false, frames: 0, error: null },
  vr: null,
};
window.parallaxViewer = viewerState;
// Debug read-out for tests: the mean nearness (0..1) of the depth half of the RGB-D video frame shown.
viewerState.sampleDepth = () => itemView.sampleRgbdDepth();

const canvas = document.getElementById('viewer-canvas');
const messageEl = document.getElementById('viewer-message');
const statusEl = document.getElementById('viewer-status');

function showMessage(html, { error = false } = {}) {
  messageEl.hidden = false;
  messageEl.classList.toggle('error', error);
  messageEl.innerHTML = html;
}

function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
}

// ---------------------------------------------------------------- scene

const renderer = new THREE.WebGLRenderer({ canvas, antialias: true, preserveDrawingBuffer: true });
renderer.setPixelRatio(Math.min(window.devicePixelRatio || 1, 2));
renderer.setClearColor(0x07080b, 1);
renderer.xr.enabled = true;

const scene = new THREE.Scene();
const camera = new THREE.PerspectiveCamera(45, 1, 0.01, 100);
camera.layers.enable(LEFT_EYE_LAYER); // a stereo pair's left view is the flat screen's picture
// The picture lives in `stage`: in VR the stage hangs in front of the user at eye height.
const stage = new THREE.Group();
scene.add(stage);
const surface = new DepthSurface(stage);
const desktop = new DesktopView(canvas, camera);
const redraw = () => { desktop.dirty = true; };

const pageOptions = new URLSearchParams(window.location.search);
const itemView = new ItemView({
  renderer,
  surface,
  video: document.getElementById('viewer-video'),
  // Address options (docs/viewer.md): ?stereo=<format>, ?eyes=swap, ?depth=frames.
  stereoFormat: pageOptions.get('stereo'),
  swapEyes: pageOptions.get('eyes') === 'swap',
  framesOnly: pageOptions.get('depth') === 'frames', // the depth frames even when an RGB-D video exists
  state: viewerState,
  onChange: redraw,
  onStatus: (text) => {
    statusEl.textContent = text;
    statusEl.hidden = !text;
    vrLibrary?.setStatus(text);
  },
  onDepthReady: (id) => showItem(id).catch((error) => itemView.onStatus(error.message)),
});
const library = new Library();
let vrLibrary = null;

const depthStrength = {
  get: () => surface.uniforms.depthScale.value,
  set(value) {
    const scale = THREE.MathUtils.clamp(value, 0, 0.8);
    surface.uniforms.depthScale.value = scale;
    document.getElementById('depth-slider').value = String(scale);
    try { localStorage.setItem(DEPTH_SCALE_STORAGE, String(scale)); } catch { /* storage disabled */ }
    redraw();
  },
};

// ---------------------------------------------------------------- page controls

function toggleFullscreen() {
  if (document.fullscreenElement) document.exitFullscreen();
  else document.documentElement.requestFullscreen?.().catch(() => {});
}

function toggleMute() {
  const playback = itemView.playback;
  if (!(playback instanceof HTMLVideoElement)) return;
  playback.muted = !playback.muted;
  document.getElementById('mute-button').innerHTML = playback.muted ? ICONS.muted : ICONS.sound;
}

function refreshVideoControls() {
  const playback = itemView.playback;
  document.getElementById('video-controls').hidden = !playback;
  if (!playback) return;
  const slider = document.getElementById('time-slider');
  const duration = itemView.duration;
  slider.max = String(duration || 1);
  if (document.activeElement !== slider) slider.value = String(playback.currentTime);
  document.getElementById('time-label').textContent = `${formatDuration(playback.currentTime)} / ${formatDuration(duration)}`;
  document.getElementById('play-button').innerHTML = playback.paused ? ICONS.play : ICONS.pause;
  document.getElementById('mute-button').hidden = !(playback instanceof HTMLVideoElement);
}

function wirePageControls() {
  window.addEventListener('keydown', (event) => {
    if (event.target instanceof HTMLInputElement && event.target.type !== 'range') return;
    // A focused button already acts on Space/Enter; handling it here too would toggle twice.
    if (event.target instanceof HTMLButtonElement && (event.key === ' ' || event.key === 'Enter')) return;
    const step = 0.15;
    switch (event.key) {
      case 'ArrowLeft': desktop.tilt(-step, 0); break;
      case 'ArrowRight': desktop.tilt(step, 0); break;
      case 'ArrowUp': desktop.tilt(0, step); break;
      case 'ArrowDown': desktop.tilt(0, -step); break;
      case '+': case '=': depthStrength.set(depthStrength.get() + 0.05); break;
      case '-': case '_': depthStrength.set(depthStrength.get() - 0.05); break;
      case 'r': case 'R': case '0': desktop.reset(); break;
      case 'f': case 'F': toggleFullscreen(); break;
      case ' ': itemView.togglePlay(); break;
      case 'm': case 'M': toggleMute(); break;
      default: return;
    }
    event.preventDefault();
  });
  document.getElementById('reset-button').addEventListener('click', () => desktop.reset());
  document.getElementById('fullscreen-button').addEventListener('click', toggleFullscreen);
  const depthSlider = document.getElementById('depth-slider');
  depthSlider.addEventListener('input', () => depthStrength.set(Number(depthSlider.value)));
  document.getElementById('play-button').addEventListener('click', () => itemView.togglePlay());
  document.getElementById('mute-button').addEventListener('click', toggleMute);
  const timeSlider = document.getElementById('time-slider');
  timeSlider.addEventListener('input', () => itemView.seek(Number(timeSlider.value)));
  const video = document.getElementById('viewer-video');
  for (const name of ['timeupdate', 'seeked', 'loadedmetadata', 'play', 'pause']) video.addEventListener(name, refreshVideoControls);
  setInterval(() => { if (itemView.playback && !(itemView.playback instanceof HTMLVideoElement)) refreshVideoControls(); }, 250);
  window.addEventListener('resize', redraw);
}

// ---------------------------------------------------------------- items

/** Show an item (the page's, or one chosen in VR): title, address, controls follow. */
async function showItem(id) {
  viewerState.ready = false;
  const shown = await itemView.show(id);
  if (!shown) return;
  const { item, manifest } = itemView;
  document.getElementById('viewer-title').textContent = item.original_filename || `Item ${id}`;
  document.title = `${item.original_filename || id} — Parallax viewer`;
  document.getElementById('back-link').href = `/items/${encodeURIComponent(id)}`;
  let subtitle = [item.kind, 'no depth yet'];
  if (viewerState.stereo) subtitle = [item.kind, `stereo (${viewerState.stereo})`];
  else if (viewerState.mode === 'rgbd-video') subtitle = [manifest.kind, manifest.model, 'RGB-D video'];
  else if (manifest) subtitle = [manifest.kind, manifest.model, manifest.kind === 'video' ? `${manifest.frames.length} depth frames` : null];
  document.getElementById('viewer-subtitle').textContent = subtitle.filter(Boolean).join(' · ');
  if (window.location.pathname !== `/viewer/${encodeURIComponent(id)}`) {
    window.history.replaceState(null, '', `/viewer/${encodeURIComponent(id)}${window.location.search}`);
  }
  refreshVideoControls();
  awaitingFirstFrame = true;
  redraw();
}

// ---------------------------------------------------------------- VR

function placeStageForVR(presenting) {
  if (presenting) {
    stage.position.copy(VR_STAGE.position);
    stage.scale.setScalar(VR_STAGE.scale);
    surface.uniforms.depthOrigin.value = 1.0; // nearest at the window, the rest behind it
  } else {
    stage.position.set(0, 0, 0);
    stage.scale.setScalar(1);
    stage.visible = true;
    surface.uniforms.depthOrigin.value = 0.5;
  }
}

async function startVR(session) {
  placeStageForVR(true);
  await renderer.xr.setSession(session);
  viewerState.xr.presenting = true;
  await vrLibrary.enter();
}

renderer.xr.addEventListener('sessionend', () => {
  viewerState.xr.presenting = false;
  vrLibrary?.exit();
  placeStageForVR(false);
  redraw();
});

async function setUpVR() {
  vrLibrary = new VRLibrary({ renderer, scene, library, itemView, state: viewerState, showItem, depth: depthStrength, onChange: redraw });
  vrLibrary.onModeChange = (mode) => { stage.visible = mode !== 'gallery'; };
  const availability = await offerVR(document.getElementById('vr-slot'), {
    onSession: startVR,
    onError: (message) => {
      viewerState.xr.error = message;
      showMessage(`${escapeHtml(message)}<br><small>Check that the headset is connected and awake, then try again.</small>`, { error: true });
    },
  });
  viewerState.xr.available = availability.supported;
  viewerState.xr.reason = availability.reason ?? null;
}

// ---------------------------------------------------------------- main loop

let lastFrameTime = performance.now();
let awaitingFirstFrame = false;

function resizeIfNeeded() {
  const width = canvas.clientWidth;
  const height = canvas.clientHeight;
  const size = renderer.getSize(new THREE.Vector2());
  if (size.x !== width || size.y !== height) {
    renderer.setSize(width, height, false);
    camera.aspect = width / Math.max(1, height);
    camera.updateProjectionMatrix();
    redraw();
  }
}

function renderFrame() {
  const now = performance.now();
  const delta = Math.min((now - lastFrameTime) / 1000, 0.1); // seconds; capped after a background tab
  lastFrameTime = now;
  itemView.update(delta);
  if (renderer.xr.isPresenting) {
    vrLibrary.update();
    renderer.render(scene, camera); // the headset drives the camera, every frame
    viewerState.xr.frames += 1;
  } else {
    resizeIfNeeded();
    desktop.place(delta, surface.aspect);
    if (!desktop.dirty || !surface.mesh) return; // nothing moved: save the CPU/GPU (matters with software GL)
    desktop.dirty = false;
    renderer.render(scene, camera);
  }
  if (awaitingFirstFrame && surface.mesh) {
    awaitingFirstFrame = false;
    viewerState.ready = true;
    document.body.dataset.ready = 'true';
  }
}

async function main() {
  const mediaId = idFromPath();
  if (!mediaId) throw new Error('No item id in the address.');
  document.getElementById('back-link').href = `/items/${encodeURIComponent(mediaId)}`;
  const saved = localStorage.getItem(DEPTH_SCALE_STORAGE);
  depthStrength.set(saved !== null && Number.isFinite(Number(saved)) ? Number(saved) : 0.3);
  wirePageControls();
  viewerState.xr.emulated = Boolean(await maybeEmulateXR());
  renderer.setAnimationLoop(renderFrame);
  showMessage('Loading…');
  await showItem(mediaId);
  messageEl.hidden = true;
  document.getElementById('viewer-controls').hidden = false;
  canvas.focus();
  await setUpVR();
}

main().catch((error) => {
  viewerState.error = error.message;
  console.error(error);
  const detail = error instanceof ItemNotFound ? '' : '<br><small>See the item\'s page for its jobs.</small>';
  showMessage(`${escapeHtml(error.message)}${detail}<br><small><a href="/">Back to the library</a></small>`, { error: true });
});

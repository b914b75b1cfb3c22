// 3D viewer: a subdivided plane textured with the photo (or the playing video) whose vertices are
// pushed toward the viewer by the depth map. Pointer/touch orbit the camera slightly (parallax);
// "Enter VR" appears when the browser offers immersive-vr (WebXR).
import * as THREE from 'three';
import { VRButton } from 'three/addons/webxr/VRButton.js';
import { ApiError, api, fetchBlob, mediaSource } from './api.js';
import { depthFramePosition, nearDarkFactor, validateManifest } from './depth-frames.js';
import { formatDuration, idFromPath } from './ui.js';

const DEPTH_SCALE_STORAGE = 'parallax.viewer.depthScale';
const MANIFEST_RETRY_MS = 4000;
const MAX_PHOTO_SEGMENTS = 384; // mesh resolution along the longer side
const MAX_VIDEO_SEGMENTS = 192; // lower for video: the mesh is re-displaced every frame
const MAX_TEXTURE_SIDE = 4096;
const DEPTH_PRELOAD_CONCURRENCY = 4;
// Inline SVG so the controls look the same without emoji/symbol fonts.
const ICONS = {
  play: '<svg viewBox="0 0 24 24" width="18" height="18" aria-hidden="true"><path d="M8 5v14l11-7z" fill="currentColor"/></svg>',
  pause: '<svg viewBox="0 0 24 24" width="18" height="18" aria-hidden="true"><path d="M7 5h4v14H7zm6 0h4v14h-4z" fill="currentColor"/></svg>',
  muted: '<svg viewBox="0 0 24 24" width="18" height="18" aria-hidden="true"><path d="M4 9v6h4l5 4V5L8 9zm12.6 3 2.7-2.7-1.1-1.1-2.7 2.7-2.7-2.7-1.1 1.1 2.7 2.7-2.7 2.7 1.1 1.1 2.7-2.7 2.7 2.7 1.1-1.1z" fill="currentColor"/></svg>',
  sound: '<svg viewBox="0 0 24 24" width="18" height="18" aria-hidden="true"><path d="M4 9v6h4l5 4V5L8 9zm11.5 3a4.5 4.5 0 0 0-2.5-4v8a4.5 4.5 0 0 0 2.5-4zM13 3.2v2.1a7 7 0 0 1 0 13.4v2.1a9 9 0 0 0 0-17.6z" fill="currentColor"/></svg>',
};
const MAX_YAW = 0.28; // radians the camera orbits at the pointer's extremes
const MAX_PITCH = 0.18;

// State the browser tests read: ready, the manifest, and which depth frame (manifest `index`) is shown.
const viewerState = {
  ready: false,
  error: null,
  mode: null, // "photo" | "video" | "frames" (video shown from its colour frames)
  manifest: null,
  currentDepthIndex: 0,
  loadedDepthFrames: 0,
  video: null,
};
window.parallaxViewer = viewerState;

const mediaId = idFromPath();
const canvas = document.getElementById('viewer-canvas');
const messageEl = document.getElementById('viewer-message');

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
// The photo lives in `stage`: in VR the stage is moved in front of the user at eye height.
const stage = new THREE.Group();
scene.add(stage);

// Textures are uploaded top row first (flipY = false; ImageBitmap and video both), hence 1 - uv.y.
const material = new THREE.ShaderMaterial({
  uniforms: {
    colorMap: { value: null },
    depthMap: { value: null },
    depthScale: { value: 0.3 },
    nearDark: { value: 0.0 },
  },
  vertexShader: /* glsl */ `
    uniform sampler2D depthMap;
    uniform float depthScale;
    uniform float nearDark;
    varying vec2 vUv;
    void main() {
      vUv = vec2(uv.x, 1.0 - uv.y);
      float depth = texture2D(depthMap, vUv).r;
      float nearness = mix(depth, 1.0 - depth, nearDark);
      // Centre the relief on z = 0 so the camera orbits around the middle of the scene.
      vec3 displaced = position + vec3(0.0, 0.0, (nearness - 0.5) * depthScale);
      gl_Position = projectionMatrix * modelViewMatrix * vec4(displaced, 1.0);
    }`,
  fragmentShader: /* glsl */ `
    uniform sampler2D colorMap;
    varying vec2 vUv;
    void main() {
      gl_FragColor = vec4(texture2D(colorMap, vUv).rgb, 1.0);
    }`,
});
let mesh = null;
let planeAspect = 1;

function buildMesh(aspect, maxSegments) {
  planeAspect = aspect;
  const segmentsX = aspect >= 1 ? maxSegments : Math.max(2, Math.round(maxSegments * aspect));
  const segmentsY = aspect >= 1 ? Math.max(2, Math.round(maxSegments / aspect)) : maxSegments;
  if (mesh) {
    mesh.geometry.dispose();
    stage.remove(mesh);
  }
  mesh = new THREE.Mesh(new THREE.PlaneGeometry(aspect, 1, segmentsX, segmentsY), material);
  stage.add(mesh);
}

// ---------------------------------------------------------------- textures

/** Decode an image (fetched with the API key when one is set) into a texture, EXIF orientation applied. */
async function loadImageTexture(url, { depth = false, mimeHint = '' } = {}) {
  const blob = await fetchBlob(url);
  let bitmap;
  try {
    bitmap = await createImageBitmap(blob, { imageOrientation: 'from-image' });
  } catch {
    const type = blob.type || mimeHint || 'this format';
    throw new Error(`This browser cannot decode the image (${type}).`);
  }
  const limit = Math.min(MAX_TEXTURE_SIDE, renderer.capabilities.maxTextureSize);
  const scale = Math.min(1, limit / Math.max(bitmap.width, bitmap.height));
  if (scale < 1) {
    const resized = await createImageBitmap(bitmap, {
      resizeWidth: Math.max(1, Math.floor(bitmap.width * scale)),
      resizeHeight: Math.max(1, Math.floor(bitmap.height * scale)),
      resizeQuality: 'high',
    });
    bitmap.close();
    bitmap = resized;
  }
  const texture = new THREE.Texture(bitmap);
  texture.flipY = false;
  texture.colorSpace = THREE.NoColorSpace; // pass colours through untouched (see fragment shader)
  if (depth) {
    // Sampled in the vertex shader: no mipmaps, smooth interpolation between depth pixels.
    texture.generateMipmaps = false;
    texture.minFilter = THREE.LinearFilter;
  } else {
    texture.minFilter = THREE.LinearMipmapLinearFilter;
    texture.anisotropy = renderer.capabilities.getMaxAnisotropy();
  }
  texture.magFilter = THREE.LinearFilter;
  texture.wrapS = THREE.ClampToEdgeWrapping;
  texture.wrapT = THREE.ClampToEdgeWrapping;
  texture.needsUpdate = true;
  return texture;
}

/** Loads a list of frame textures with limited concurrency; `want(i)` moves a frame to the front. */
class FrameTextureLoader {
  constructor(urls, { depth, onLoaded }) {
    this.urls = urls;
    this.depth = depth;
    this.onLoaded = onLoaded;
    this.textures = new Array(urls.length).fill(null);
    this.pending = new Map(); // position -> promise
    this.queue = urls.map((_, i) => i);
    this.active = 0;
    this.failures = 0;
  }

  get loadedCount() {
    return this.textures.filter(Boolean).length;
  }

  want(position) {
    if (this.textures[position] || this.pending.has(position)) return;
    this.queue = [position, ...this.queue.filter((p) => p !== position)];
    this.pump();
  }

  load(position) {
    if (this.textures[position]) return Promise.resolve(this.textures[position]);
    if (this.pending.has(position)) return this.pending.get(position);
    this.queue = this.queue.filter((p) => p !== position);
    this.active += 1;
    const promise = loadImageTexture(this.urls[position], { depth: this.depth })
      .then((texture) => {
        this.textures[position] = texture;
        this.onLoaded?.(position);
        return texture;
      })
      .catch((error) => {
        this.failures += 1;
        throw error;
      })
      .finally(() => {
        this.pending.delete(position);
        this.active -= 1;
        this.pump();
      });
    this.pending.set(position, promise);
    return promise;
  }

  pump() {
    while (this.active < DEPTH_PRELOAD_CONCURRENCY && this.queue.length) {
      this.load(this.queue.shift()).catch(() => {}); // failures are counted; the frame stays unloaded
    }
  }
}

// ---------------------------------------------------------------- view control (pointer, keys, wheel)

const view = {
  target: new THREE.Vector2(0, 0), // where the pointer asks the camera to be, -1..1
  current: new THREE.Vector2(0, 0),
  zoom: 1,
  dragging: false,
  dirty: true, // render on the next frame
};

function setLookTarget(x, y) {
  view.target.set(THREE.MathUtils.clamp(x, -1, 1), THREE.MathUtils.clamp(y, -1, 1));
  view.dirty = true;
}

function wireViewControls() {
  canvas.addEventListener('pointermove', (event) => {
    // Mouse: the camera follows the pointer. Touch/pen: it follows the finger while pressed.
    if (event.pointerType !== 'mouse' && !view.dragging) return;
    const rect = canvas.getBoundingClientRect();
    setLookTarget(((event.clientX - rect.left) / rect.width) * 2 - 1, -(((event.clientY - rect.top) / rect.height) * 2 - 1));
  });
  canvas.addEventListener('pointerdown', (event) => {
    view.dragging = true;
    canvas.setPointerCapture(event.pointerId);
    canvas.focus();
  });
  const release = (event) => {
    view.dragging = false;
    if (event.pointerType !== 'mouse') setLookTarget(0, 0);
  };
  canvas.addEventListener('pointerup', release);
  canvas.addEventListener('pointercancel', release);
  canvas.addEventListener('pointerleave', (event) => {
    if (event.pointerType === 'mouse' && !view.dragging) setLookTarget(0, 0);
  });
  canvas.addEventListener('wheel', (event) => {
    event.preventDefault();
    view.zoom = THREE.MathUtils.clamp(view.zoom * Math.exp(event.deltaY * 0.001), 0.4, 2.5);
    view.dirty = true;
  }, { passive: false });

  // Two-finger pinch zoom.
  const touches = new Map();
  let pinchStart = null;
  canvas.addEventListener('pointerdown', (event) => {
    if (event.pointerType !== 'touch') return;
    touches.set(event.pointerId, event);
    if (touches.size === 2) pinchStart = { distance: touchDistance(touches), zoom: view.zoom };
  });
  canvas.addEventListener('pointermove', (event) => {
    if (!touches.has(event.pointerId)) return;
    touches.set(event.pointerId, event);
    if (pinchStart && touches.size === 2) {
      view.zoom = THREE.MathUtils.clamp(pinchStart.zoom * (pinchStart.distance / touchDistance(touches)), 0.4, 2.5);
      view.dirty = true;
    }
  });
  const endTouch = (event) => {
    touches.delete(event.pointerId);
    if (touches.size < 2) pinchStart = null;
  };
  canvas.addEventListener('pointerup', endTouch);
  canvas.addEventListener('pointercancel', endTouch);

  window.addEventListener('keydown', (event) => {
    if (event.target instanceof HTMLInputElement && event.target.type !== 'range') return;
    // A focused button already acts on Space/Enter; handling it here too would toggle twice.
    if (event.target instanceof HTMLButtonElement && (event.key === ' ' || event.key === 'Enter')) return;
    const step = 0.15;
    switch (event.key) {
      case 'ArrowLeft': setLookTarget(view.target.x - step, view.target.y); break;
      case 'ArrowRight': setLookTarget(view.target.x + step, view.target.y); break;
      case 'ArrowUp': setLookTarget(view.target.x, view.target.y + step); break;
      case 'ArrowDown': setLookTarget(view.target.x, view.target.y - step); break;
      case '+': case '=': setDepthScale(material.uniforms.depthScale.value + 0.05); break;
      case '-': case '_': setDepthScale(material.uniforms.depthScale.value - 0.05); break;
      case 'r': case 'R': case '0': resetView(); break;
      case 'f': case 'F': toggleFullscreen(); break;
      case ' ': togglePlay(); break;
      case 'm': case 'M': toggleMute(); break;
      default: return;
    }
    event.preventDefault();
  });

  document.getElementById('reset-button').addEventListener('click', resetView);
  document.getElementById('fullscreen-button').addEventListener('click', toggleFullscreen);
  const depthSlider = document.getElementById('depth-slider');
  depthSlider.addEventListener('input', () => setDepthScale(Number(depthSlider.value)));
  window.addEventListener('resize', () => { view.dirty = true; });
}

function touchDistance(touches) {
  const [a, b] = [...touches.values()];
  return Math.hypot(a.clientX - b.clientX, a.clientY - b.clientY) || 1;
}

function resetView() {
  view.zoom = 1;
  setLookTarget(0, 0);
}

function setDepthScale(value) {
  const scale = THREE.MathUtils.clamp(value, 0, 0.8);
  material.uniforms.depthScale.value = scale;
  document.getElementById('depth-slider').value = String(scale);
  try { localStorage.setItem(DEPTH_SCALE_STORAGE, String(scale)); } catch { /* storage disabled */ }
  view.dirty = true;
}

function toggleFullscreen() {
  if (document.fullscreenElement) document.exitFullscreen();
  else document.documentElement.requestFullscreen?.().catch(() => {});
}

/** Keep the canvas's drawing buffer and the camera in step with the window. */
function resizeIfNeeded() {
  const width = canvas.clientWidth;
  const height = canvas.clientHeight;
  const size = renderer.getSize(new THREE.Vector2());
  if (size.x !== width || size.y !== height) {
    renderer.setSize(width, height, false);
    camera.aspect = width / Math.max(1, height);
    camera.updateProjectionMatrix();
    view.dirty = true;
  }
}

/** Orbit the camera around the plane's centre, at a distance that fits the whole plane. */
function placeCamera(delta) {
  const smoothing = 1 - Math.exp(-delta * 8);
  view.current.lerp(view.target, smoothing);
  if (view.current.distanceTo(view.target) > 0.0005) view.dirty = true;
  const halfFov = THREE.MathUtils.degToRad(camera.fov / 2);
  const fitHeight = 0.5 / Math.tan(halfFov);
  const fitWidth = (planeAspect / 2) / (Math.tan(halfFov) * camera.aspect);
  const distance = Math.max(fitHeight, fitWidth) * 1.1 * view.zoom;
  const yaw = view.current.x * MAX_YAW;
  const pitch = view.current.y * MAX_PITCH;
  camera.position.set(
    distance * Math.sin(yaw) * Math.cos(pitch),
    distance * Math.sin(pitch),
    distance * Math.cos(yaw) * Math.cos(pitch),
  );
  camera.lookAt(0, 0, 0);
}

// ---------------------------------------------------------------- VR

async function offerVR() {
  if (!navigator.xr?.isSessionSupported) return;
  let supported = false;
  try {
    supported = await navigator.xr.isSessionSupported('immersive-vr');
  } catch {
    supported = false; // e.g. blocked by a permissions policy
  }
  if (!supported) return;
  const button = VRButton.createButton(renderer);
  button.id = 'vr-button';
  document.getElementById('vr-slot').append(button);
  renderer.xr.addEventListener('sessionstart', () => {
    // Hang the picture 1.6 m in front of the user at eye height, 1.2 m tall.
    stage.position.set(0, 1.5, -1.6);
    stage.scale.setScalar(1.2);
  });
  renderer.xr.addEventListener('sessionend', () => {
    stage.position.set(0, 0, 0);
    stage.scale.setScalar(1);
    view.dirty = true;
  });
}

// ---------------------------------------------------------------- video playback

/** Stands in for the <video> when only colour frames can be shown: a clock with the same fields. */
class FrameClock {
  constructor(duration) {
    this.duration = duration;
    this.currentTime = 0;
    this.paused = false;
    this.muted = true;
  }
  play() { this.paused = false; return Promise.resolve(); }
  pause() { this.paused = true; }
  advance(delta) {
    if (this.paused || !this.duration) return;
    this.currentTime = (this.currentTime + delta) % this.duration;
  }
}

let playback = null; // <video> or FrameClock
let depthFrames = null; // FrameTextureLoader of depth frames (video)
let colorFrames = null; // FrameTextureLoader of colour frames ("frames" mode only)
let lastVideoTime = -1;

function togglePlay() {
  if (!playback) return;
  if (playback.paused) playback.play()?.catch?.(() => {});
  else playback.pause();
  updatePlayButton();
}

function toggleMute() {
  if (!(playback instanceof HTMLVideoElement)) return;
  playback.muted = !playback.muted;
  document.getElementById('mute-button').innerHTML = playback.muted ? ICONS.muted : ICONS.sound;
}

function updatePlayButton() {
  document.getElementById('play-button').innerHTML = playback?.paused ? ICONS.play : ICONS.pause;
}

function mediaDuration(manifest) {
  if (playback instanceof HTMLVideoElement && Number.isFinite(playback.duration)) return playback.duration;
  const frames = manifest.frames;
  const step = manifest.effective_fps ? 1 / manifest.effective_fps : 0;
  return frames[frames.length - 1].time + step;
}

function wireVideoControls(manifest) {
  document.getElementById('video-controls').hidden = false;
  const slider = document.getElementById('time-slider');
  const playButton = document.getElementById('play-button');
  const muteButton = document.getElementById('mute-button');
  playButton.addEventListener('click', togglePlay);
  muteButton.addEventListener('click', toggleMute);
  muteButton.hidden = !(playback instanceof HTMLVideoElement);
  slider.addEventListener('input', () => {
    playback.currentTime = Number(slider.value);
    view.dirty = true;
  });
  const refreshTime = () => {
    const duration = mediaDuration(manifest);
    slider.max = String(duration);
    if (document.activeElement !== slider) slider.value = String(playback.currentTime);
    document.getElementById('time-label').textContent =
      `${formatDuration(playback.currentTime)} / ${formatDuration(duration)}`;
  };
  if (playback instanceof HTMLVideoElement) {
    for (const name of ['timeupdate', 'seeked', 'loadedmetadata']) playback.addEventListener(name, refreshTime);
    for (const name of ['play', 'pause']) playback.addEventListener(name, updatePlayButton);
  } else {
    setInterval(refreshTime, 250);
  }
  refreshTime();
  updatePlayButton();
}

/** Load the source into the <video>; resolves false when this browser cannot play it. */
function startVideo(video, source) {
  return new Promise((resolve) => {
    const done = (ok) => {
      video.removeEventListener('loadeddata', onLoaded);
      video.removeEventListener('error', onError);
      resolve(ok);
    };
    const onLoaded = () => done(true);
    const onError = () => done(false);
    video.addEventListener('loadeddata', onLoaded);
    video.addEventListener('error', onError);
    video.src = source;
    video.load();
  });
}

/** Choose the depth frame for the playback time; show the nearest loaded one until it arrives. */
function updateVideoFrame(delta) {
  const manifest = viewerState.manifest;
  if (playback instanceof FrameClock) playback.advance(delta);
  const time = playback.currentTime;
  if (time !== lastVideoTime || !playback.paused) view.dirty = true;
  lastVideoTime = time;
  const position = depthFramePosition(manifest.frames, time);
  let shown = position;
  if (!depthFrames.textures[position]) {
    depthFrames.want(position);
    shown = nearestLoaded(depthFrames.textures, position);
  }
  if (shown >= 0) {
    material.uniforms.depthMap.value = depthFrames.textures[shown];
    viewerState.currentDepthIndex = manifest.frames[shown].index;
  }
  if (colorFrames) {
    let colorShown = position;
    if (!colorFrames.textures[position]) {
      colorFrames.want(position);
      colorShown = nearestLoaded(colorFrames.textures, position);
    }
    if (colorShown >= 0) material.uniforms.colorMap.value = colorFrames.textures[colorShown];
  }
}

function nearestLoaded(textures, position) {
  for (let distance = 1; distance < textures.length; distance += 1) {
    if (textures[position - distance]) return position - distance;
    if (textures[position + distance]) return position + distance;
  }
  return -1;
}

// ---------------------------------------------------------------- loading

async function fetchManifest() {
  // "not_ready": the depth job is still pending or running, so wait and ask again. Any other 404
  // (job failed, skipped, cancelled, never made) is final and its reason is shown.
  for (;;) {
    try {
      return validateManifest(await api(`/api/media/${encodeURIComponent(mediaId)}/depth/manifest`));
    } catch (error) {
      const itemLink = `<a href="/items/${encodeURIComponent(mediaId)}">the item's page</a>`;
      if (error instanceof ApiError && error.status === 404 && error.code !== 'not_ready') {
        throw new ViewerError(`No depth map: ${escapeHtml(error.message)}.<br><small>See ${itemLink} for its jobs.</small>`);
      }
      if (!(error instanceof ApiError) || error.status !== 404) throw error;
      showMessage(`${escapeHtml(error.message || 'The depth map is not ready yet.')}<br>
        <small>This page retries on its own. Progress is on ${itemLink}.</small>`);
      await new Promise((resolve) => setTimeout(resolve, MANIFEST_RETRY_MS));
    }
  }
}

/** An error whose message is already HTML (escaped where needed). */
class ViewerError extends Error {}

async function loadItemDetails() {
  try {
    const { item } = await api(`/api/media/${encodeURIComponent(mediaId)}`);
    document.getElementById('viewer-title').textContent = item.original_filename || `Item ${mediaId}`;
    document.title = `${item.original_filename || mediaId} — Parallax viewer`;
    return item;
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) throw new Error('This item does not exist (it may have been deleted).');
    throw error;
  }
}

async function setUpPhoto(manifest, item) {
  const [frame] = manifest.frames;
  const [color, depth] = await Promise.all([
    loadImageTexture(frame.color_url, { mimeHint: item?.mime_type }),
    loadImageTexture(frame.depth_url, { depth: true }),
  ]);
  material.uniforms.colorMap.value = color;
  material.uniforms.depthMap.value = depth;
  const aspect = manifest.frame_width && manifest.frame_height
    ? manifest.frame_width / manifest.frame_height
    : color.image.width / color.image.height;
  const depthWidth = Math.max(depth.image.width, depth.image.height);
  buildMesh(aspect, Math.min(MAX_PHOTO_SEGMENTS, depthWidth));
  viewerState.currentDepthIndex = frame.index;
  viewerState.loadedDepthFrames = 1;
}

async function setUpVideo(manifest) {
  const video = document.getElementById('viewer-video');
  const statusEl = document.getElementById('depth-frames-status');
  depthFrames = new FrameTextureLoader(manifest.frames.map((f) => f.depth_url), {
    depth: true,
    onLoaded: () => {
      viewerState.loadedDepthFrames = depthFrames.loadedCount;
      const total = manifest.frames.length;
      statusEl.textContent = depthFrames.loadedCount < total ? `depth frames ${depthFrames.loadedCount}/${total}` : '';
      view.dirty = true;
    },
  });
  const firstDepth = depthFrames.load(0);
  depthFrames.pump(); // preload every depth frame in the background

  let playable = false;
  try {
    playable = await startVideo(video, await mediaSource(manifest.source_url));
  } catch {
    playable = false;
  }
  if (playable) {
    viewerState.mode = 'video';
    playback = video;
    video.addEventListener('seeked', () => { view.dirty = true; });
    if ('requestVideoFrameCallback' in video) {
      // A new video frame (also after a seek while paused) must reach the screen.
      const onVideoFrame = () => {
        view.dirty = true;
        video.requestVideoFrameCallback(onVideoFrame);
      };
      video.requestVideoFrameCallback(onVideoFrame);
    }
    const texture = new THREE.VideoTexture(video);
    texture.flipY = false;
    texture.colorSpace = THREE.NoColorSpace;
    texture.generateMipmaps = false;
    texture.minFilter = THREE.LinearFilter;
    material.uniforms.colorMap.value = texture;
    video.play().catch(() => updatePlayButton()); // autoplay may be refused; the play button still works
  } else {
    // The browser cannot decode the source (codec): animate the extracted colour frames instead.
    if (manifest.frames.some((f) => !f.color_url)) {
      throw new Error('This browser cannot play this video file, and no colour frames were stored '
        + 'for it (they are kept when the depth job runs with include_color). Try another browser.');
    }
    viewerState.mode = 'frames';
    video.removeAttribute('src');
    colorFrames = new FrameTextureLoader(manifest.frames.map((f) => f.color_url), { depth: false, onLoaded: () => { view.dirty = true; } });
    material.uniforms.colorMap.value = await colorFrames.load(0);
    colorFrames.pump();
    const step = manifest.effective_fps ? 1 / manifest.effective_fps : 0;
    playback = new FrameClock(manifest.frames[manifest.frames.length - 1].time + step);
    document.getElementById('viewer-subtitle').textContent = 'This browser cannot play the video file; showing its frames.';
  }
  viewerState.video = playback;
  material.uniforms.depthMap.value = await firstDepth;
  viewerState.currentDepthIndex = manifest.frames[0].index;
  const aspect = manifest.frame_width && manifest.frame_height
    ? manifest.frame_width / manifest.frame_height
    : (video.videoWidth || 16) / (video.videoHeight || 9);
  buildMesh(aspect, MAX_VIDEO_SEGMENTS);
  wireVideoControls(manifest);
}

// ---------------------------------------------------------------- main loop

let lastFrameTime = performance.now();
let firstFrameRendered = false;

function renderFrame() {
  const now = performance.now();
  const delta = Math.min((now - lastFrameTime) / 1000, 0.1); // seconds; capped after a background tab
  lastFrameTime = now;
  resizeIfNeeded();
  if (playback && depthFrames) updateVideoFrame(delta);
  if (renderer.xr.isPresenting) {
    renderer.render(scene, camera); // the headset drives the camera
    return;
  }
  placeCamera(delta);
  if (!view.dirty || !mesh) return; // nothing moved: save the CPU/GPU (matters with software GL)
  view.dirty = false;
  renderer.render(scene, camera);
  if (!firstFrameRendered && material.uniforms.colorMap.value && material.uniforms.depthMap.value) {
    firstFrameRendered = true;
    viewerState.ready = true;
    document.body.dataset.ready = 'true';
  }
}

async function main() {
  if (!mediaId) throw new Error('No item id in the address.');
  document.getElementById('back-link').href = `/items/${encodeURIComponent(mediaId)}`;
  const savedScale = Number(localStorage.getItem(DEPTH_SCALE_STORAGE));
  setDepthScale(Number.isFinite(savedScale) && localStorage.getItem(DEPTH_SCALE_STORAGE) !== null ? savedScale : 0.3);
  wireViewControls();
  renderer.setAnimationLoop(renderFrame);

  const item = await loadItemDetails();
  const manifest = await fetchManifest();
  viewerState.manifest = manifest;
  material.uniforms.nearDark.value = nearDarkFactor(manifest.polarity);
  const subtitle = [manifest.kind, manifest.model, manifest.kind === 'video' ? `${manifest.frames.length} depth frames` : null]
    .filter(Boolean).join(' · ');
  document.getElementById('viewer-subtitle').textContent = subtitle;
  showMessage('Loading textures…');

  if (manifest.kind === 'video') {
    await setUpVideo(manifest);
  } else {
    viewerState.mode = 'photo';
    await setUpPhoto(manifest, item);
  }
  messageEl.hidden = true;
  document.getElementById('viewer-controls').hidden = false;
  view.dirty = true;
  canvas.focus();
  offerVR();
}

main().catch((error) => {
  viewerState.error = error.message;
  console.error(error);
  const text = error instanceof ViewerError ? error.message : escapeHtml(error.message);
  showMessage(`${text}<br><small><a href="/">Back to the library</a></small>`, { error: true });
});

// The library inside the headset: a gallery of thumbnails (newest first, a page at a time), and
// under the picture a toolbar (library, previous/next, play/pause, a seek bar, depth strength,
// exit). Point with a controller's ray or a hand and pull the trigger / pinch to select; the
// thumbstick steps to the next/previous item, or pages the gallery.
import * as THREE from 'three';
import { fetchBlob } from '../api.js';
import { formatDuration } from '../ui.js';

const PX_PER_M = 640; // canvas pixels per metre of panel: sharp at arm's length, small uploads
const STICK_PRESS = 0.7;
const STICK_RELEASE = 0.3;
const THUMB_WIDTH = 256;

const GALLERY_CENTRE = new THREE.Vector3(0, 1.45, -1.5);
const GALLERY_COLUMNS = 4;
const TILE = { width: 0.3, height: 0.2625, gap: 0.03 };
// The picture: 1.1 m tall, 2 m away at eye height, about 30° of the view: a window, not a wall.
export const VR_STAGE = { position: new THREE.Vector3(0, 1.5, -2.0), scale: 1.1 };
const TOOLBAR = { position: new THREE.Vector3(0, 0.98, -1.15), tilt: -0.55 };

const COLOURS = { panel: '#161922', hover: '#2c3350', text: '#e8eaf0', muted: '#a4abbd', accent: '#7c86ff', good: '#5fd08a', warn: '#e0b455' };

function roundRect(ctx, x, y, w, h, r) {
  ctx.beginPath();
  ctx.roundRect(x, y, w, h, r);
}

/** A flat panel with a canvas texture, `width` × `height` metres; `draw(ctx, w, h)` paints it. */
class Panel {
  constructor(width, height, name, draw) {
    this.canvas = document.createElement('canvas');
    this.canvas.width = Math.round(width * PX_PER_M);
    this.canvas.height = Math.round(height * PX_PER_M);
    this.texture = new THREE.CanvasTexture(this.canvas);
    this.texture.colorSpace = THREE.SRGBColorSpace;
    this.mesh = new THREE.Mesh(new THREE.PlaneGeometry(width, height),
      new THREE.MeshBasicMaterial({ map: this.texture, transparent: true }));
    this.mesh.name = name;
    this.mesh.userData.panel = this;
    this.draw = draw;
    this.hover = false;
    this.redraw();
  }

  redraw() {
    const ctx = this.canvas.getContext('2d');
    ctx.clearRect(0, 0, this.canvas.width, this.canvas.height);
    this.draw(ctx, this.canvas.width, this.canvas.height, this);
    this.texture.needsUpdate = true;
  }

  setHover(hover) {
    if (hover === this.hover) return;
    this.hover = hover;
    this.redraw();
  }
}

function button(label, width, name, action) {
  const panel = new Panel(width, 0.065, name, (ctx, w, h, self) => {
    roundRect(ctx, 2, 2, w - 4, h - 4, h * 0.3);
    ctx.fillStyle = self.hover ? COLOURS.hover : COLOURS.panel;
    ctx.fill();
    ctx.strokeStyle = self.hover ? COLOURS.accent : 'rgba(255,255,255,.25)';
    ctx.lineWidth = 3;
    ctx.stroke();
    ctx.fillStyle = COLOURS.text;
    ctx.font = `600 ${Math.round(h * 0.42)}px system-ui, sans-serif`;
    ctx.textAlign = 'center';
    ctx.textBaseline = 'middle';
    ctx.fillText(self.label, w / 2, h / 2);
  });
  panel.label = label;
  panel.redraw();
  panel.mesh.userData.action = action;
  return panel;
}

function fitText(ctx, text, maxWidth) {
  if (ctx.measureText(text).width <= maxWidth) return text;
  let cut = text;
  while (cut.length > 1 && ctx.measureText(`${cut}…`).width > maxWidth) cut = cut.slice(0, -1);
  return `${cut}…`;
}

function visibleInTree(object) {
  for (let node = object; node; node = node.parent) if (!node.visible) return false;
  return true;
}

/** A small thumbnail for a gallery tile (decoded off the main thread), or null. */
async function thumbnailBitmap(item) {
  const candidates = [item.thumbnail_url];
  if (item.kind === 'photo') candidates.push(item.original_url);
  candidates.push(`/api/media/${encodeURIComponent(item.id)}/depth/frames/1/color`); // videos; HEIC photos
  for (const url of candidates.filter(Boolean)) {
    try {
      return await createImageBitmap(await fetchBlob(url), { imageOrientation: 'from-image', resizeWidth: THUMB_WIDTH, resizeQuality: 'medium' });
    } catch {
      /* try the next source */
    }
  }
  return null;
}

function statusWords(item) {
  return { completed: 'ready', processing: 'processing…', failed: 'failed', skipped: 'no depth', cancelled: 'cancelled', none: 'no depth' }[item.status] ?? (item.status || '');
}

export class VRLibrary {
  /**
   * renderer, scene; library: Library; itemView: ItemView; state: window.parallaxViewer;
   * showItem(id): switch the picture; depth: {get(), set(v)}; onChange(): redraw.
   */
  constructor({ renderer, scene, library, itemView, state, showItem, depth, onChange }) {
    Object.assign(this, { renderer, library, itemView, state, showItem, depth, onChange });
    this.root = new THREE.Group();
    this.root.visible = false;
    scene.add(this.root);
    this.mode = null; // 'gallery' | 'item' while in VR
    this.pageNumber = 1;
    this.interactive = [];
    this.stick = { latched: false };
    this.status = '';
    this.raycaster = new THREE.Raycaster();
    this.tempMatrix = new THREE.Matrix4();
    this.buildGallery();
    this.buildToolbar();
    this.controllers = [0, 1].map((index) => this.buildController(index));
    this.state.vr = {
      mode: null,
      page: 1,
      pageCount: 1,
      tiles: [], // ids on the shown gallery page
      targetPoint: (name, u = 0.5, v = 0.5) => this.targetPoint(name, u, v),
    };
  }

  // ------------------------------------------------------------ building

  buildGallery() {
    this.gallery = new THREE.Group();
    this.gallery.position.copy(GALLERY_CENTRE);
    this.root.add(this.gallery);
    const rows = Math.ceil(this.library.pageSize / GALLERY_COLUMNS);
    const gridWidth = GALLERY_COLUMNS * TILE.width + (GALLERY_COLUMNS - 1) * TILE.gap;
    const gridHeight = rows * TILE.height + (rows - 1) * TILE.gap;
    this.tiles = [];
    for (let i = 0; i < this.library.pageSize; i += 1) {
      const tile = new Panel(TILE.width, TILE.height, `tile:${i}`, (ctx, w, h, self) => this.drawTile(ctx, w, h, self));
      const column = i % GALLERY_COLUMNS;
      const row = Math.floor(i / GALLERY_COLUMNS);
      tile.mesh.position.set(
        -gridWidth / 2 + TILE.width / 2 + column * (TILE.width + TILE.gap),
        gridHeight / 2 - TILE.height / 2 - row * (TILE.height + TILE.gap),
        0,
      );
      tile.mesh.userData.action = () => tile.item && this.openItem(tile.item.id);
      this.gallery.add(tile.mesh);
      this.interactive.push(tile.mesh);
      this.tiles.push(tile);
    }
    this.galleryTitle = new Panel(gridWidth, 0.07, 'gallery-title', (ctx, w, h) => {
      ctx.fillStyle = COLOURS.text;
      ctx.font = `600 ${Math.round(h * 0.55)}px system-ui, sans-serif`;
      ctx.textBaseline = 'middle';
      ctx.fillText(`Library · page ${this.pageNumber} of ${this.library.pageCount}`, 8, h / 2);
      ctx.fillStyle = COLOURS.muted;
      ctx.textAlign = 'right';
      ctx.font = `${Math.round(h * 0.4)}px system-ui, sans-serif`;
      ctx.fillText('thumbstick: pages · trigger / pinch: open', w - 8, h / 2);
    });
    this.galleryTitle.mesh.position.set(0, gridHeight / 2 + 0.07, 0);
    this.gallery.add(this.galleryTitle.mesh);
    const controls = [
      button('‹ Page', 0.22, 'page-prev', () => this.turnPage(-1)),
      button('Page ›', 0.22, 'page-next', () => this.turnPage(1)),
      button('Back to picture', 0.34, 'close', () => this.itemView.item && this.setMode('item')),
      button('Exit VR', 0.22, 'exit', () => this.renderer.xr.getSession()?.end()),
    ];
    this.layoutRow(controls, this.gallery, -gridHeight / 2 - 0.08);
  }

  buildToolbar() {
    this.toolbar = new THREE.Group();
    this.toolbar.position.copy(TOOLBAR.position);
    this.toolbar.rotation.x = TOOLBAR.tilt;
    this.root.add(this.toolbar);
    this.playButton = button('Play', 0.14, 'play', () => this.itemView.togglePlay());
    const controls = [
      button('Library', 0.16, 'gallery', () => this.setMode('gallery')),
      button('‹ Prev', 0.14, 'prev', () => this.step(-1)),
      button('Next ›', 0.14, 'next', () => this.step(1)),
      this.playButton,
      button('Depth −', 0.15, 'depth-less', () => this.depth.set(this.depth.get() - 0.05)),
      button('Depth +', 0.15, 'depth-more', () => this.depth.set(this.depth.get() + 0.05)),
      button('Exit VR', 0.15, 'exit-item', () => this.renderer.xr.getSession()?.end()),
    ];
    const width = this.layoutRow(controls, this.toolbar, 0);
    this.seekBar = new Panel(width, 0.045, 'seek', (ctx, w, h) => this.drawSeekBar(ctx, w, h));
    this.seekBar.mesh.position.set(0, 0.065, 0);
    this.seekBar.mesh.userData.action = (hit) => this.itemView.seek(hit.uv.x * this.itemView.duration);
    this.toolbar.add(this.seekBar.mesh);
    this.interactive.push(this.seekBar.mesh);
    this.info = new Panel(width, 0.06, 'info', (ctx, w, h) => {
      const item = this.itemView.item;
      ctx.fillStyle = 'rgba(12,14,20,.85)';
      roundRect(ctx, 0, 0, w, h, h * 0.3);
      ctx.fill();
      ctx.textBaseline = 'middle';
      ctx.font = `600 ${Math.round(h * 0.42)}px system-ui, sans-serif`;
      ctx.fillStyle = COLOURS.text;
      ctx.fillText(fitText(ctx, item?.original_filename || 'Parallax', w * 0.5), 14, h / 2);
      ctx.textAlign = 'right';
      ctx.font = `${Math.round(h * 0.36)}px system-ui, sans-serif`;
      ctx.fillStyle = this.status ? COLOURS.warn : COLOURS.muted;
      ctx.fillText(fitText(ctx, this.status || 'thumbstick ‹ › : previous / next', w * 0.46), w - 14, h / 2);
    });
    this.info.mesh.position.set(0, 0.13, 0);
    this.toolbar.add(this.info.mesh);
  }

  /** Lay buttons out in a centred row at height y; returns the row's width. */
  layoutRow(panels, parent, y) {
    const gap = 0.012;
    const widths = panels.map((p) => p.mesh.geometry.parameters.width);
    const total = widths.reduce((a, b) => a + b, 0) + gap * (panels.length - 1);
    let x = -total / 2;
    panels.forEach((panel, i) => {
      panel.mesh.position.set(x + widths[i] / 2, y, 0);
      x += widths[i] + gap;
      parent.add(panel.mesh);
      this.interactive.push(panel.mesh);
    });
    return total;
  }

  buildController(index) {
    const controller = this.renderer.xr.getController(index);
    const ray = new THREE.Line(
      new THREE.BufferGeometry().setFromPoints([new THREE.Vector3(0, 0, 0), new THREE.Vector3(0, 0, -1)]),
      new THREE.LineBasicMaterial({ color: 0x9aa4ff, transparent: true, opacity: 0.8 }),
    );
    ray.scale.z = 3;
    controller.add(ray);
    controller.userData.ray = ray;
    // The trigger on a controller, a pinch with a tracked hand: both are "select".
    controller.addEventListener('select', () => this.select(controller));
    this.root.add(controller);
    return controller;
  }

  // ------------------------------------------------------------ drawing

  drawTile(ctx, w, h, tile) {
    const labelHeight = Math.round(h * 0.22);
    roundRect(ctx, 0, 0, w, h, 14);
    ctx.fillStyle = tile.hover ? COLOURS.hover : COLOURS.panel;
    ctx.fill();
    const item = tile.item;
    if (!item) return;
    const area = { w: w - 12, h: h - labelHeight - 12 };
    if (tile.bitmap) {
      const scale = Math.min(area.w / tile.bitmap.width, area.h / tile.bitmap.height);
      const dw = tile.bitmap.width * scale;
      const dh = tile.bitmap.height * scale;
      ctx.drawImage(tile.bitmap, 6 + (area.w - dw) / 2, 6 + (area.h - dh) / 2, dw, dh);
    } else {
      ctx.fillStyle = COLOURS.muted;
      ctx.font = `${Math.round(h * 0.09)}px system-ui, sans-serif`;
      ctx.textAlign = 'center';
      ctx.fillText(item.kind === 'video' ? 'video' : '…', w / 2, area.h / 2);
      ctx.textAlign = 'left';
    }
    if (item.kind === 'video') {
      ctx.fillStyle = 'rgba(0,0,0,.6)';
      ctx.fillRect(10, 10, 64, 26);
      ctx.fillStyle = COLOURS.text;
      ctx.font = '600 17px system-ui, sans-serif';
      ctx.fillText(`▶ ${formatDuration(item.duration) || ''}`, 16, 29);
    }
    ctx.font = `500 ${Math.round(labelHeight * 0.42)}px system-ui, sans-serif`;
    ctx.textBaseline = 'middle';
    ctx.fillStyle = COLOURS.text;
    const y = h - labelHeight / 2;
    const words = statusWords(item);
    ctx.fillText(fitText(ctx, item.original_filename || item.id, w * 0.62), 10, y);
    ctx.textAlign = 'right';
    ctx.fillStyle = item.status === 'completed' ? COLOURS.good : COLOURS.warn;
    ctx.fillText(words, w - 10, y);
    ctx.textAlign = 'left';
    ctx.textBaseline = 'alphabetic';
  }

  drawSeekBar(ctx, w, h) {
    const duration = this.itemView.duration;
    roundRect(ctx, 0, h * 0.25, w, h * 0.5, h * 0.25);
    ctx.fillStyle = 'rgba(255,255,255,.18)';
    ctx.fill();
    if (!duration) return;
    const fraction = Math.min(1, this.itemView.playback.currentTime / duration);
    roundRect(ctx, 0, h * 0.25, Math.max(h * 0.5, w * fraction), h * 0.5, h * 0.25);
    ctx.fillStyle = COLOURS.accent;
    ctx.fill();
  }

  // ------------------------------------------------------------ modes and actions

  async enter() {
    this.root.visible = true;
    await this.setMode(this.itemView.item ? 'item' : 'gallery');
  }

  exit() {
    this.root.visible = false;
    this.mode = null;
    this.state.vr.mode = null;
  }

  async setMode(mode) {
    this.mode = mode;
    this.state.vr.mode = mode;
    this.gallery.visible = mode === 'gallery';
    this.toolbar.visible = mode === 'item';
    this.onModeChange?.(mode);
    if (mode === 'gallery') {
      this.library.refresh(); // states move on while one looks at a picture
      const id = this.itemView.item?.id;
      const place = id ? await this.library.locate(id) : null;
      await this.showPage(place ? place.page : this.pageNumber);
    } else {
      this.refreshToolbar();
    }
    this.onChange();
  }

  async showPage(number) {
    const items = await this.library.page(number);
    this.pageNumber = number;
    this.state.vr.page = number;
    this.state.vr.pageCount = this.library.pageCount;
    this.state.vr.tiles = items.map((item) => item.id);
    this.galleryTitle.redraw();
    this.tiles.forEach((tile, i) => {
      tile.item = items[i] ?? null;
      tile.bitmap?.close();
      tile.bitmap = null;
      tile.mesh.visible = Boolean(tile.item);
      tile.redraw();
      if (tile.item) {
        const wanted = tile.item;
        thumbnailBitmap(wanted).then((bitmap) => {
          if (tile.item !== wanted) return bitmap?.close();
          tile.bitmap = bitmap;
          tile.redraw();
          this.onChange();
        });
      }
    });
  }

  async turnPage(step) {
    const next = this.pageNumber + step;
    if (next >= 1 && next <= this.library.pageCount) await this.showPage(next);
  }

  async openItem(id) {
    await this.setMode('item');
    await this.showItem(id);
    this.refreshToolbar();
  }

  async step(direction) {
    const id = this.itemView.item?.id;
    const neighbour = id ? await this.library.neighbour(id, direction) : null;
    if (!neighbour) {
      this.setStatus(direction > 0 ? 'This is the last item' : 'This is the first item');
      return;
    }
    await this.showItem(neighbour.id);
    this.refreshToolbar();
  }

  setStatus(text) {
    if (text === this.status) return;
    this.status = text;
    this.info.redraw();
  }

  refreshToolbar() {
    const video = Boolean(this.itemView.playback);
    this.seekBar.mesh.visible = video;
    this.playButton.mesh.visible = video;
    this.playButton.label = this.itemView.playback?.paused === false ? 'Pause' : 'Play';
    this.playButton.redraw();
    this.seekBar.redraw();
    this.info.redraw();
  }

  // ------------------------------------------------------------ input

  hit(controller) {
    controller.updateMatrixWorld(true);
    this.tempMatrix.identity().extractRotation(controller.matrixWorld);
    this.raycaster.ray.origin.setFromMatrixPosition(controller.matrixWorld);
    this.raycaster.ray.direction.set(0, 0, -1).applyMatrix4(this.tempMatrix);
    const targets = this.interactive.filter(visibleInTree);
    return this.raycaster.intersectObjects(targets, false)[0] ?? null;
  }

  select(controller) {
    if (!this.mode) return;
    const hit = this.hit(controller);
    hit?.object.userData.action?.(hit);
  }

  /** Per frame in VR: hover highlights, ray lengths, the thumbstick, the play state. */
  update() {
    if (!this.mode) return;
    const hovered = new Set();
    for (const controller of this.controllers) {
      const hit = controller.visible ? this.hit(controller) : null;
      controller.userData.ray.scale.z = hit ? hit.distance : 3;
      if (hit) hovered.add(hit.object);
    }
    for (const mesh of this.interactive) mesh.userData.panel.setHover(hovered.has(mesh));
    this.readThumbsticks();
    if (this.mode === 'item' && this.itemView.playback) {
      const label = this.itemView.playback.paused ? 'Play' : 'Pause';
      if (label !== this.playButton.label) {
        this.playButton.label = label;
        this.playButton.redraw();
      }
      const now = performance.now();
      if (!this.lastSeekDraw || now - this.lastSeekDraw > 250) {
        this.lastSeekDraw = now;
        this.seekBar.redraw();
      }
    }
  }

  readThumbsticks() {
    const session = this.renderer.xr.getSession();
    if (!session) return;
    let x = 0;
    let y = 0;
    for (const source of session.inputSources) {
      const axes = source.gamepad?.axes;
      if (!axes || axes.length < 4) continue; // xr-standard: the thumbstick is axes 2 and 3
      if (Math.abs(axes[2]) > Math.abs(x)) x = axes[2];
      if (Math.abs(axes[3]) > Math.abs(y)) y = axes[3];
    }
    const strength = Math.max(Math.abs(x), Math.abs(y));
    if (this.stick.latched) {
      if (strength < STICK_RELEASE) this.stick.latched = false;
      return;
    }
    if (strength < STICK_PRESS) return;
    this.stick.latched = true; // one step per push
    const horizontal = Math.abs(x) >= Math.abs(y);
    const direction = horizontal ? Math.sign(x) : Math.sign(y); // down / right = forward
    if (this.mode === 'gallery') this.turnPage(direction);
    else if (horizontal) this.step(direction);
  }

  /** World position of a point on a named control (u, v in 0..1 across it), for tests and debugging. */
  targetPoint(name, u, v) {
    const mesh = this.interactive.find((m) => m.name === name) ?? this.root.getObjectByName(name);
    if (!mesh) return null;
    const { width, height } = mesh.geometry.parameters;
    mesh.updateMatrixWorld(true);
    return mesh.localToWorld(new THREE.Vector3((u - 0.5) * width, (0.5 - v) * height, 0)).toArray();
  }
}

// The flat-screen view: pointer/touch orbit the camera slightly around the picture (parallax),
// wheel/pinch zoom, arrows tilt. `place(delta)` positions the camera each frame.
import * as THREE from 'three';

const MAX_YAW = 0.28; // radians the camera orbits at the pointer's extremes
const MAX_PITCH = 0.18;

export class DesktopView {
  constructor(canvas, camera) {
    this.canvas = canvas;
    this.camera = camera;
    this.target = new THREE.Vector2(0, 0); // where the pointer asks the camera to be, -1..1
    this.current = new THREE.Vector2(0, 0);
    this.zoom = 1;
    this.dragging = false;
    this.dirty = true; // render on the next frame
    this.wire();
  }

  look(x, y) {
    this.target.set(THREE.MathUtils.clamp(x, -1, 1), THREE.MathUtils.clamp(y, -1, 1));
    this.dirty = true;
  }

  tilt(dx, dy) {
    this.look(this.target.x + dx, this.target.y + dy);
  }

  reset() {
    this.zoom = 1;
    this.look(0, 0);
  }

  wire() {
    const canvas = this.canvas;
    canvas.addEventListener('pointermove', (event) => {
      // Mouse: the camera follows the pointer. Touch/pen: it follows the finger while pressed.
      if (event.pointerType !== 'mouse' && !this.dragging) return;
      const rect = canvas.getBoundingClientRect();
      this.look(((event.clientX - rect.left) / rect.width) * 2 - 1, -(((event.clientY - rect.top) / rect.height) * 2 - 1));
    });
    canvas.addEventListener('pointerdown', (event) => {
      this.dragging = true;
      canvas.setPointerCapture(event.pointerId);
      canvas.focus();
    });
    const release = (event) => {
      this.dragging = false;
      if (event.pointerType !== 'mouse') this.look(0, 0);
    };
    canvas.addEventListener('pointerup', release);
    canvas.addEventListener('pointercancel', release);
    canvas.addEventListener('pointerleave', (event) => {
      if (event.pointerType === 'mouse' && !this.dragging) this.look(0, 0);
    });
    canvas.addEventListener('wheel', (event) => {
      event.preventDefault();
      this.zoom = THREE.MathUtils.clamp(this.zoom * Math.exp(event.deltaY * 0.001), 0.4, 2.5);
      this.dirty = true;
    }, { passive: false });

    // Two-finger pinch zoom.
    const touches = new Map();
    let pinchStart = null;
    const distance = () => {
      const [a, b] = [...touches.values()];
      return Math.hypot(a.clientX - b.clientX, a.clientY - b.clientY) || 1;
    };
    canvas.addEventListener('pointerdown', (event) => {
      if (event.pointerType !== 'touch') return;
      touches.set(event.pointerId, event);
      if (touches.size === 2) pinchStart = { distance: distance(), zoom: this.zoom };
    });
    canvas.addEventListener('pointermove', (event) => {
      if (!touches.has(event.pointerId)) return;
      touches.set(event.pointerId, event);
      if (pinchStart && touches.size === 2) {
        this.zoom = THREE.MathUtils.clamp(pinchStart.zoom * (pinchStart.distance / distance()), 0.4, 2.5);
        this.dirty = true;
      }
    });
    const endTouch = (event) => {
      touches.delete(event.pointerId);
      if (touches.size < 2) pinchStart = null;
    };
    canvas.addEventListener('pointerup', endTouch);
    canvas.addEventListener('pointercancel', endTouch);
  }

  /** Orbit the camera around the plane's centre, at a distance that fits a plane of `aspect`. */
  place(delta, aspect) {
    const camera = this.camera;
    this.current.lerp(this.target, 1 - Math.exp(-delta * 8));
    if (this.current.distanceTo(this.target) > 0.0005) this.dirty = true;
    const halfFov = THREE.MathUtils.degToRad(camera.fov / 2);
    const fitHeight = 0.5 / Math.tan(halfFov);
    const fitWidth = (aspect / 2) / (Math.tan(halfFov) * camera.aspect);
    const distance = Math.max(fitHeight, fitWidth) * 1.1 * this.zoom;
    const yaw = this.current.x * MAX_YAW;
    const pitch = this.current.y * MAX_PITCH;
    camera.position.set(
      distance * Math.sin(yaw) * Math.cos(pitch),
      distance * Math.sin(pitch),
      distance * Math.cos(yaw) * Math.cos(pitch),
    );
    camera.lookAt(0, 0, 0);
  }
}

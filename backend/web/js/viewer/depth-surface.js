// The depth surface: a subdivided plane textured with the picture whose vertices the depth map
// pushes toward the viewer. One material, one mesh (two for a stereo pair, one per eye); the
// colour and depth may be parts of one texture (an RGB-D video's frame holds both).
import * as THREE from 'three';
import { standaloneHeadset } from './textures.js';

export const MAX_PHOTO_SEGMENTS = standaloneHeadset ? 256 : 384; // mesh resolution along the longer side
export const MAX_VIDEO_SEGMENTS = standaloneHeadset ? 128 : 192; // lower for video: re-displaced every frame
// Triangles whose corners differ by more than this in nearness (0..1) span an object's outline:
// stretched across the gap they form "rubber sheet" spikes, so they are not drawn.
export const EDGE_CUT = 0.06;

// Which part of a texture holds the picture: x, y (from the top-left), width, height, in 0..1.
export const WHOLE = Object.freeze([0, 0, 1, 1]);
export const LEFT_HALF = Object.freeze([0, 0, 0.5, 1]);
export const RIGHT_HALF = Object.freeze([0.5, 0, 0.5, 1]);
export const TOP_HALF = Object.freeze([0, 0, 1, 0.5]);
export const BOTTOM_HALF = Object.freeze([0, 0.5, 1, 0.5]);

// A stereo pair is drawn twice on the same plane: the left eye's half on camera layer 1, the right
// eye's on layer 2. three.js's WebXR cameras see layer 1 (left eye) or 2 (right eye) besides the main
// camera's layers; the page's camera enables layer 1, so a flat screen shows the left view.
export const LEFT_EYE_LAYER = 1;
export const RIGHT_EYE_LAYER = 2;

// Textures are uploaded top row first (flipY = false; ImageBitmap and video both), hence 1 - uv.y.
const vertexShader = /* glsl */ `
  uniform sampler2D depthMap;
  uniform float depthScale;
  uniform float depthOrigin;
  uniform float nearDark;
  uniform vec2 gridStep;
  uniform vec4 depthRect;
  varying vec2 vUv;
  varying float vJump;
  float nearnessAt(vec2 at) {
    float depth = texture2D(depthMap, depthRect.xy + clamp(at, 0.0, 1.0) * depthRect.zw).r;
    return mix(depth, 1.0 - depth, nearDark);
  }
  void main() {
    vUv = vec2(uv.x, 1.0 - uv.y);
    float nearness = nearnessAt(vUv);
    // The largest step to a neighbouring vertex: big only where the surface tears at an outline.
    vJump = max(
      max(abs(nearnessAt(vUv + vec2(gridStep.x, 0.0)) - nearness), abs(nearnessAt(vUv - vec2(gridStep.x, 0.0)) - nearness)),
      max(abs(nearnessAt(vUv + vec2(0.0, gridStep.y)) - nearness), abs(nearnessAt(vUv - vec2(0.0, gridStep.y)) - nearness)));
    // depthOrigin 0.5 centres the relief on the plane (desktop orbit); 1.0 puts the nearest things
    // on the plane and the rest behind it, like a view through a window (VR).
    vec3 displaced = position + vec3(0.0, 0.0, (nearness - depthOrigin) * depthScale);
    gl_Position = projectionMatrix * modelViewMatrix * vec4(displaced, 1.0);
  }`;

const fragmentShader = /* glsl */ `
  uniform sampler2D colorMap;
  uniform float depthScale;
  uniform float edgeCut;
  uniform vec4 colorRect;
  varying vec2 vUv;
  varying float vJump;
  void main() {
    if (depthScale > 0.0 && edgeCut > 0.0 && vJump > edgeCut) discard;
    gl_FragColor = vec4(texture2D(colorMap, colorRect.xy + vUv * colorRect.zw).rgb, 1.0);
  }`;

export class DepthSurface {
  constructor(parent) {
    this.parent = parent;
    this.aspect = 1;
    this.mesh = null;
    this.material = new THREE.ShaderMaterial({
      uniforms: {
        colorMap: { value: null },
        depthMap: { value: null },
        depthScale: { value: 0.3 },
        depthOrigin: { value: 0.5 },
        nearDark: { value: 0.0 },
        gridStep: { value: new THREE.Vector2(1 / 256, 1 / 256) },
        edgeCut: { value: EDGE_CUT },
        colorRect: { value: new THREE.Vector4(...WHOLE) },
        depthRect: { value: new THREE.Vector4(...WHOLE) },
      },
      vertexShader,
      fragmentShader,
    });
    // The right eye's copy: the same uniforms (depth strength, textures) but its own colour part.
    this.rightMaterial = new THREE.ShaderMaterial({
      uniforms: { ...this.material.uniforms, colorRect: { value: new THREE.Vector4(...WHOLE) } },
      vertexShader,
      fragmentShader,
    });
    this.rightMesh = null;
    this.stereo = false;
  }

  /** Where colour and depth sit in their textures (e.g. an RGB-D video: colour left, depth right),
   * and for a stereo pair the right eye's colour part (`right`); call before build(). */
  setLayout({ color = WHOLE, depth = WHOLE, right = null } = {}) {
    this.uniforms.colorRect.value.set(...color);
    this.uniforms.depthRect.value.set(...depth);
    this.stereo = Boolean(right);
    if (right) this.rightMaterial.uniforms.colorRect.value.set(...right);
  }

  get uniforms() {
    return this.material.uniforms;
  }

  /** (Re)build the plane for a picture of `aspect` (width / height), 1 unit tall. */
  build(aspect, maxSegments) {
    this.aspect = aspect;
    const segmentsX = aspect >= 1 ? maxSegments : Math.max(2, Math.round(maxSegments * aspect));
    const segmentsY = aspect >= 1 ? Math.max(2, Math.round(maxSegments / aspect)) : maxSegments;
    this.uniforms.gridStep.value.set(1 / segmentsX, 1 / segmentsY);
    if (this.mesh) {
      this.mesh.geometry.dispose();
      this.parent.remove(this.mesh);
    }
    if (this.rightMesh) this.parent.remove(this.rightMesh);
    this.rightMesh = null;
    this.mesh = new THREE.Mesh(new THREE.PlaneGeometry(aspect, 1, segmentsX, segmentsY), this.material);
    this.parent.add(this.mesh);
    if (this.stereo) {
      this.mesh.layers.set(LEFT_EYE_LAYER);
      this.rightMesh = new THREE.Mesh(this.mesh.geometry, this.rightMaterial);
      this.rightMesh.layers.set(RIGHT_EYE_LAYER);
      this.parent.add(this.rightMesh);
    }
  }

  setTextures({ color = this.uniforms.colorMap.value, depth = this.uniforms.depthMap.value } = {}) {
    this.uniforms.colorMap.value = color;
    this.uniforms.depthMap.value = depth;
  }
}

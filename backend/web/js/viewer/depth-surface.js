// The depth surface: a subdivided plane textured with the picture whose vertices the depth map
// pushes toward the viewer. One material, one mesh; other renderers of the same picture (stereo,
// RGB-D video) can replace the material and keep the rest of the viewer.
import * as THREE from 'three';
import { standaloneHeadset } from './textures.js';

export const MAX_PHOTO_SEGMENTS = standaloneHeadset ? 256 : 384; // mesh resolution along the longer side
export const MAX_VIDEO_SEGMENTS = standaloneHeadset ? 128 : 192; // lower for video: re-displaced every frame
// Triangles whose corners differ by more than this in nearness (0..1) span an object's outline:
// stretched across the gap they form "rubber sheet" spikes, so they are not drawn.
export const EDGE_CUT = 0.06;

// Textures are uploaded top row first (flipY = false; ImageBitmap and video both), hence 1 - uv.y.
const vertexShader = /* glsl */ `
  uniform sampler2D depthMap;
  uniform float depthScale;
  uniform float depthOrigin;
  uniform float nearDark;
  uniform vec2 gridStep;
  varying vec2 vUv;
  varying float vJump;
  float nearnessAt(vec2 at) {
    float depth = texture2D(depthMap, at).r;
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
  varying vec2 vUv;
  varying float vJump;
  void main() {
    if (depthScale > 0.0 && edgeCut > 0.0 && vJump > edgeCut) discard;
    gl_FragColor = vec4(texture2D(colorMap, vUv).rgb, 1.0);
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
      },
      vertexShader,
      fragmentShader,
    });
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
    this.mesh = new THREE.Mesh(new THREE.PlaneGeometry(aspect, 1, segmentsX, segmentsY), this.material);
    this.parent.add(this.mesh);
  }

  setTextures({ color = this.uniforms.colorMap.value, depth = this.uniforms.depthMap.value } = {}) {
    this.uniforms.colorMap.value = color;
    this.uniforms.depthMap.value = depth;
  }
}

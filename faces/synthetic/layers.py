"""The layers of a frame, back to front: body (torso and neck), hair shell, head; each composited in place.

The head and the hair shell are ray-cast ellipsoids (faces.synthetic.raycast) shaded by faces.synthetic.shading;
the head samples the identity's textures where its rays hit. Glasses are the one layer in front of the head: rims,
bridge and arms drawn as lines in 3D head space, projected with the frame's camera.
"""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

from faces.synthetic.geometry import HeadGeometry
from faces.synthetic.identity import Glasses, Identity
from faces.synthetic.raycast import Camera, Region, intersect_ellipsoid, pixel_region, view_rays
from faces.synthetic.shading import Light, blend, shade
from faces.synthetic.texture import FaceTextures, texture_coordinates
from faces.types import Float32Array, Float64Array


def draw_head(
    image: Float32Array,
    geometry: HeadGeometry,
    textures: FaceTextures,
    albedo: Float32Array,
    camera: Camera,
    light: Light,
) -> None:
    """The head: the ellipsoid raised by the height field, textured with *albedo*, bump-mapped and shaded."""
    axes = geometry.axes
    head_height = geometry.identity.head_height
    zero = np.zeros(3)
    region = pixel_region(camera, axes + 0.3, zero, image.shape)
    if region is None:
        return
    origins, direction = view_rays(region, camera)
    bump: Float32Array | float = 0.0
    # Fixed-point iteration: intersect the ellipsoid raised by the current height guess, re-read the height
    # there. Exact for a frontal view; damped, it settles within a few steps for the poses used here.
    for step in range(4):
        hits, chord = intersect_ellipsoid(origins, direction, axes, zero, bump)
        mx, my = texture_coordinates(hits[0], hits[1], head_height)
        new_bump = _sample(textures.height, mx, my, cv2.BORDER_REPLICATE)
        bump = new_bump if step == 0 else 0.5 * bump + 0.5 * new_bump
    hits, chord = intersect_ellipsoid(origins, direction, axes, zero, bump)
    mx, my = texture_coordinates(hits[0], hits[1], head_height)
    grads = _sample(textures.bump, mx, my, cv2.BORDER_REPLICATE)
    colour = _sample(albedo, mx, my, cv2.BORDER_CONSTANT)
    alpha = _sample(textures.alpha, mx, my, cv2.BORDER_CONSTANT)

    a, b, c = (float(v) for v in axes)
    nx = hits[0] / np.float32(a * a)
    ny = hits[1] / np.float32(b * b)
    nz = (hits[2] - bump) / np.float32(c * c)
    inv_len = 1 / (np.sqrt(nx * nx + ny * ny + nz * nz) + 1e-6)
    nx, ny, nz = nx * inv_len, ny * inv_len, nz * inv_len
    # Perturb the ellipsoid normal by the height-field gradient (bump mapping).
    nx = nx - grads[..., 1] * nz
    ny = ny - grads[..., 2] * nz
    normal = np.stack([nx, ny, nz], axis=-1) @ camera.rotation.T.astype(np.float32)
    normal /= np.linalg.norm(normal, axis=-1, keepdims=True) + 1e-6
    shading, spec = shade(normal, light)
    # Eyes and teeth (bright texels) are glossier than skin.
    spec_map = 0.06 + 0.1 * (colour.min(axis=-1) > 0.75)
    rgb = colour * (shading[..., None] * light.colour) + (spec * spec_map)[..., None]
    # Soft silhouette: fade the outermost pixels of the ellipsoid rim, where the chord length goes to 0.
    alpha = alpha * np.clip(chord * np.float32(camera.scale / 3.0), 0, 1) * (normal[..., 2] > -0.2)
    blend(image, region, rgb, alpha)


def draw_hair_shell(image: Float32Array, identity: Identity, hair_shell: Float32Array, camera: Camera,
                    light: Light) -> None:
    """The hair behind and around the head: a larger ellipsoid, cut off below (long hair: falls at the sides)."""
    d = identity
    vol = d.hair_volume
    if d.hair_style == "long":
        axes = np.array([vol * 1.02, d.head_height * 1.5, d.head_depth * 1.05])
        offset = np.array([0.0, d.head_height * 0.42, -0.15])
        cut = d.head_height * 1.75
    else:
        axes = np.array([vol, d.head_height * vol * 0.95, d.head_depth * vol])
        offset = np.array([0.0, -0.08, -0.1])
        cut = 0.15
    region = pixel_region(camera, axes, offset, image.shape)
    if region is None:
        return
    scale = camera.scale
    origins, direction = view_rays(region, camera)
    hits, chord = intersect_ellipsoid(origins, direction, axes, offset, 0.0)
    local = [(hits[i] - np.float32(offset[i])) / np.float32(axes[i]) for i in range(3)]
    to_camera = camera.rotation.T.astype(np.float32)
    normal = np.stack([local[i] / np.float32(axes[i]) for i in range(3)], axis=-1) @ to_camera
    normal /= np.linalg.norm(normal, axis=-1, keepdims=True) + 1e-6
    shading, spec = shade(normal, light)
    size = hair_shell.shape[0]
    mx = (local[0] + 1) * np.float32(0.5 * (size - 1))
    my = (local[1] + 1) * np.float32(0.5 * (size - 1))
    colour = _sample(hair_shell, mx, my, cv2.BORDER_REFLECT)
    wavy_cut = cut + 0.06 * np.sin(hits[0] * 17)
    alpha = np.clip((wavy_cut - hits[1]) * np.float32(scale / 4), 0, 1) * np.clip(chord * np.float32(scale / 3), 0, 1)
    if d.hair_style == "long":
        # Below the jaw, hair falls at the sides only, leaving the neck free.
        gap = np.clip((hits[1] - (d.jaw_y - 0.1)) * 3, 0, 1) * 0.5
        alpha *= np.clip((np.abs(hits[0]) - gap) * np.float32(scale / 4), 0, 1)
    rgb = colour * (shading[..., None] * light.colour) + (0.05 * spec)[..., None]
    blend(image, region, rgb, alpha)


def draw_body(image: Float32Array, identity: Identity, camera: Camera, light: Light) -> None:
    """Neck (upright, its top following the chin) and torso, flat-shaded from the light's side."""
    d = identity
    lighting = light.lighting
    rot, scale, centre = camera.rotation, camera.scale, camera.centre
    height, width = image.shape[:2]
    skin = np.array(d.skin, np.float32) / 255
    side = float(np.clip(light.direction[0], -1, 1))
    # The neck stays upright; its top follows the head's chin.
    chin = (rot @ np.array([0.0, 0.3, -0.3]))[:2] * scale + centre
    neck_half = 0.44 * scale
    neck_bottom = centre[1] + (d.head_height + 1.0) * scale
    neck = np.array(
        [
            (chin[0] - neck_half, chin[1]),
            (chin[0] + neck_half, chin[1]),
            (centre[0] + neck_half * 1.1, neck_bottom),
            (centre[0] - neck_half * 1.1, neck_bottom),
        ]
    )
    torso_centre = centre + np.array([0.0, (d.head_height + 1.5) * scale])
    torso_axes = (2.6 * scale, 1.3 * d.head_height * scale)
    for part in ("neck", "torso"):
        if part == "neck":
            box = np.concatenate([neck.min(axis=0) - 2, neck.max(axis=0) + 2])
        else:
            box = np.concatenate([torso_centre - torso_axes - 2, torso_centre + torso_axes + 2])
        x0, y0 = max(0, int(box[0])), max(0, int(box[1]))
        x1, y1 = min(width, int(box[2]) + 1), min(height, int(box[3]) + 1)
        if x0 >= x1 or y0 >= y1:
            continue
        layer = np.zeros((y1 - y0, x1 - x0), np.float32)
        origin = np.array([x0, y0])
        if part == "neck":
            pts = np.round((neck - origin) * 16).astype(np.int32)
            cv2.fillPoly(layer, [pts], (1.0,), cv2.LINE_AA, shift=4)
        else:
            c = np.round((torso_centre - origin) * 16).astype(int)
            axes16 = (int(torso_axes[0] * 16), int(torso_axes[1] * 16))
            cv2.ellipse(layer, (int(c[0]), int(c[1])), axes16, 0.0, 0, 360, (1.0,), -1, cv2.LINE_AA, shift=4)
        ys = ((np.arange(y0, y1, dtype=np.float32) - centre[1]) / scale)[:, None]
        xs = ((np.arange(x0, x1, dtype=np.float32) - centre[0]) / scale)[None, :]
        if part == "neck":
            under_chin = 1 - 0.35 * np.exp(-(((ys - (chin[1] - centre[1]) / scale) / 0.6) ** 2))
            shading = (lighting.ambient + 0.45 * lighting.intensity) * (0.78 + 0.1 * side * xs) * under_chin
            rgb = skin * shading[..., None]
        else:
            cloth = np.array(d.clothes, np.float32) / 255
            shading = (lighting.ambient + 0.5 * lighting.intensity) * (0.85 + 0.06 * side * xs) * (1.1 - 0.06 * ys)
            rgb = cloth * shading[..., None]
        region: Region = (x0, y0, x1, y1)
        blend(image, region, rgb.astype(np.float32), layer)


GLASSES_FAR_ARM_YAW = 8.0
"""Beyond this yaw (degrees) the arm on the side turned away is hidden behind the head and not drawn."""


def glasses_outline(geometry: HeadGeometry, glasses: Glasses) -> list[tuple[Float64Array, bool]]:
    """The glasses as 3D polylines in head units, each with whether it is closed: two lens rims, the bridge and
    the two arms (image-left first)."""
    d = geometry.identity
    # Both lenses sit on one plane in front of the eyes, the bridge arches over the nose a little nearer still.
    eye_z = float(geometry.surface_points(np.array([[d.eye_x, d.eye_y]]))[0, 2])
    lens_z = eye_z + glasses.standoff
    nose_z = float(geometry.surface_points(np.array([[0.0, d.eye_y]]))[0, 2]) + 0.3 * glasses.standoff
    hw, hh = glasses.lens_half_width, glasses.lens_half_height
    angles = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    # A superellipse: a rounded rectangle, the usual shape of lenses.
    cos, sin = np.cos(angles), np.sin(angles)
    rim_x = hw * np.sign(cos) * np.abs(cos) ** 0.5
    rim_y = hh * np.sign(sin) * np.abs(sin) ** 0.5
    centre_y = d.eye_y + 0.02
    parts: list[tuple[Float64Array, bool]] = []
    for sign in (-1, 1):
        rim = np.column_stack([sign * d.eye_x + rim_x, centre_y + rim_y, np.full_like(rim_x, lens_z)])
        parts.append((rim, True))
    inner = d.eye_x - hw
    t = np.linspace(-1, 1, 9)
    bridge = np.column_stack([t * inner, centre_y - 0.3 * hh - 0.03 * (1 - t**2),
                              lens_z + (max(nose_z, lens_z) - lens_z) * (1 - t**2)])
    parts.append((bridge, False))
    outer = d.eye_x + hw
    side_x = 0.98
    side_z = float(geometry.axes[2]) * np.sqrt(max(0.0, 1 - side_x**2)) + 0.05
    for sign in (-1, 1):
        arm = np.array([[sign * outer, centre_y - 0.5 * hh, lens_z], [sign * side_x, centre_y - 0.55 * hh, side_z]])
        parts.append((arm, False))
    return parts


def draw_glasses(image: Float32Array, geometry: HeadGeometry, glasses: Glasses, camera: Camera, light: Light,
                 yaw: float) -> None:
    """Glasses in front of the head: tinted lenses with a faint reflection, dark rims, bridge and arms."""
    height, width = image.shape[:2]
    parts = glasses_outline(geometry, glasses)
    rot, scale, centre = camera.rotation, camera.scale, camera.centre
    projected = [((points @ rot.T)[:, :2] * scale + centre, closed) for points, closed in parts]
    lenses, bridge, arms = projected[:2], projected[2], projected[3:]
    # arms[0] is at head x < 0, the side that turns towards the camera for positive yaw
    if yaw > GLASSES_FAR_ARM_YAW:
        arms = arms[:1]
    elif yaw < -GLASSES_FAR_ARM_YAW:
        arms = arms[1:]
    shapes = lenses + [bridge] + arms
    thickness = max(1, int(round(glasses.rim * scale)))
    everything = np.vstack([pts for pts, _ in shapes])
    x0, y0 = np.floor(everything.min(axis=0)).astype(int) - thickness - 2
    x1, y1 = np.ceil(everything.max(axis=0)).astype(int) + thickness + 3
    x0, y0, x1, y1 = max(0, int(x0)), max(0, int(y0)), min(width, int(x1)), min(height, int(y1))
    if x0 >= x1 or y0 >= y1:
        return
    region = (x0, y0, x1, y1)
    origin = np.array([x0, y0])

    def fixed(points: Float64Array) -> npt.NDArray[np.int32]:
        return np.asarray(np.round((points - origin) * 16), dtype=np.int32)

    lighting = light.lighting
    brightness = lighting.ambient + 0.5 * lighting.intensity
    glass = np.zeros((y1 - y0, x1 - x0), np.float32)
    cv2.fillPoly(glass, [fixed(pts) for pts, _ in lenses], (1.0,), cv2.LINE_AA, shift=4)
    tint = np.array(glasses.tint, np.float32) / 255 * light.colour
    blend(image, region, tint, glass * np.float32(glasses.tint_alpha))
    glint = np.zeros_like(glass)
    for pts, _ in lenses:
        lens_centre, extent = pts.mean(axis=0), pts.max(axis=0) - pts.min(axis=0)
        streak = lens_centre + np.array([[-0.3, 0.25], [0.15, -0.3]]) * extent
        cv2.polylines(glint, [fixed(streak)], False, (1.0,), max(1, thickness), cv2.LINE_AA, shift=4)
    blend(image, region, np.ones(3, np.float32), cv2.GaussianBlur(glint, (0, 0), 1.0) * glass * np.float32(0.25))
    rims = np.zeros_like(glass)
    for pts, closed in shapes:
        cv2.polylines(rims, [fixed(pts)], closed, (1.0,), thickness, cv2.LINE_AA, shift=4)
    frame_rgb = np.array(glasses.frame, np.float32) / 255 * light.colour * np.float32(brightness)
    blend(image, region, frame_rgb, rims)


def _sample(texture: Float32Array, mx: Float32Array, my: Float32Array, border: int) -> Float32Array:
    """The texture bilinearly sampled at float32 texel coordinates (mx, my)."""
    return np.asarray(cv2.remap(texture, mx, my, cv2.INTER_LINEAR, borderMode=border), dtype=np.float32)

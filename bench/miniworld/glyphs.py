"""Glyphs of the mini world: one drawing function per object class and named instance.

Each glyph draws into a box through a `Pen` that speaks unit coordinates (u, v in [0, 1] from
the box's top-left), so a glyph is a short list of shapes and is independent of size and
position. `GLYPHS[name] = (aspect, function)`; the renderer (``bench.miniworld.render``) picks a
box of that width/height aspect, calls ``function(pen, colour, rng)`` on a transparent RGBA
layer, then flips/rotates the layer and pastes it. Not run directly; look at the glyphs with
``python -m bench.miniworld.sheet OUT.png``.

Design rule: every class has its own silhouette, because a tiny diffusion model, a detector and
a mini CLIP must tell them apart at 64x64; instances keep a fixed look that differs from their
parent's (snoopy is white with black ears, upright; the springer is a long dog with patches).
"""

from __future__ import annotations

import math

from PIL import ImageDraw

OUTLINE = (25, 25, 30, 255)


def shade(rgb, factor: float):
    """Darker (factor < 1) or lighter (factor > 1, towards white) version of a colour."""
    if factor <= 1:
        return tuple(int(c * factor) for c in rgb[:3]) + (255,)
    t = min(1.0, factor - 1)
    return tuple(int(c + (255 - c) * t) for c in rgb[:3]) + (255,)


def rgba(rgb):
    return tuple(int(c) for c in rgb[:3]) + (255,)


class Pen:
    """Draws shapes given in unit coordinates of a box on an RGBA layer."""

    def __init__(self, image, x0: float, y0: float, w: float, h: float):
        self.draw = ImageDraw.Draw(image)
        self.x0, self.y0, self.w, self.h = x0, y0, w, h
        # Outline width scales with the glyph so small and large copies look alike after downsampling.
        self.ow = max(1, round(0.035 * min(w, h)))

    def p(self, u, v):
        return (self.x0 + u * self.w, self.y0 + v * self.h)

    def _box(self, u0, v0, u1, v1):
        (a, b), (c, d) = self.p(u0, v0), self.p(u1, v1)
        return [min(a, c), min(b, d), max(a, c), max(b, d)]

    def width(self, frac):
        """A line width given as a fraction of the box's smaller side."""
        return max(1, round(frac * min(self.w, self.h)))

    def rect(self, u0, v0, u1, v1, fill, outline=OUTLINE, radius=0.0):
        width = self.ow if outline else 0
        box = self._box(u0, v0, u1, v1)
        if radius:
            self.draw.rounded_rectangle(box, radius=self.width(radius), fill=fill,
                                        outline=outline, width=width)
        else:
            self.draw.rectangle(box, fill=fill, outline=outline, width=width)

    def ellipse(self, u0, v0, u1, v1, fill, outline=OUTLINE, width=None):
        w = (width if width is not None else self.ow) if outline else 0
        self.draw.ellipse(self._box(u0, v0, u1, v1), fill=fill, outline=outline, width=w)

    def circle(self, u, v, r, fill, outline=OUTLINE):
        """A true circle: r is a fraction of the box height, whatever the aspect."""
        cx, cy = self.p(u, v)
        rad = r * self.h
        self.draw.ellipse([cx - rad, cy - rad, cx + rad, cy + rad], fill=fill, outline=outline,
                          width=self.ow if outline else 0)

    def poly(self, pts, fill, outline=OUTLINE):
        self.draw.polygon([self.p(u, v) for u, v in pts], fill=fill, outline=outline,
                          width=self.ow if outline else 0)

    def line(self, pts, fill=OUTLINE, width=0.04):
        self.draw.line([self.p(u, v) for u, v in pts], fill=fill, width=self.width(width),
                       joint="curve")

    def pieslice(self, u0, v0, u1, v1, start, end, fill, outline=OUTLINE):
        self.draw.pieslice(self._box(u0, v0, u1, v1), start, end, fill=fill, outline=outline,
                           width=self.ow if outline else 0)

    def arc(self, u0, v0, u1, v1, start, end, fill=OUTLINE, width=0.04):
        self.draw.arc(self._box(u0, v0, u1, v1), start, end, fill=fill, width=self.width(width))


# --- base objects -------------------------------------------------------------------------------

def church(pen: Pen, colour, rng):
    """House-shaped nave with a steeple, a spire and a cross on top."""
    body, dark = rgba(colour), shade(colour, 0.55)
    pen.rect(0.36, 0.55, 0.98, 1.0, body)                                # nave
    pen.poly([(0.30, 0.57), (0.67, 0.30), (1.0, 0.57)], dark)            # nave roof
    pen.rect(0.05, 0.33, 0.38, 1.0, shade(colour, 1.15))                 # steeple tower
    pen.poly([(0.02, 0.35), (0.215, 0.10), (0.41, 0.35)], dark)          # spire
    pen.line([(0.215, 0.0), (0.215, 0.12)], width=0.05)                  # cross
    pen.line([(0.15, 0.04), (0.28, 0.04)], width=0.05)
    pen.rect(0.58, 0.76, 0.76, 1.0, (70, 45, 30, 255))                   # door
    pen.ellipse(0.15, 0.45, 0.28, 0.62, (250, 230, 140, 255))            # round window


def parachute(pen: Pen, colour, rng):
    """Striped dome canopy, suspension lines, a small figure hanging below."""
    for i, start in enumerate(range(180, 360, 30)):
        fill = rgba(colour) if i % 2 == 0 else (245, 245, 245, 255)
        pen.pieslice(0.0, 0.0, 1.0, 0.84, start, start + 30, fill)
    for u in (0.02, 0.27, 0.5, 0.73, 0.98):
        pen.line([(u, 0.42), (0.5, 0.80)], fill=(60, 60, 60, 255), width=0.015)
    pen.circle(0.5, 0.80, 0.035, (240, 200, 160, 255))                   # head
    pen.line([(0.5, 0.83), (0.5, 0.92)], width=0.04)                     # body
    pen.line([(0.5, 0.92), (0.45, 1.0)], width=0.03)                     # legs
    pen.line([(0.5, 0.92), (0.55, 1.0)], width=0.03)


def golf_ball(pen: Pen, colour, rng):
    """Dimpled ball sitting on a wooden tee."""
    # A pale tint of the colour keeps the ball looking like a golf ball and the dimples visible.
    ball = shade(colour, 1.35)
    d = 0.72                                                            # ball height as v
    pen.rect(0.26, d - 0.02, 0.74, d + 0.06, (215, 180, 120, 255))      # tee cup
    pen.poly([(0.42, d + 0.05), (0.58, d + 0.05), (0.53, 1.0), (0.47, 1.0)], (215, 180, 120, 255))
    pen.circle(0.5, d / 2, d / 2 - 0.01, ball)
    dimple = shade(colour, 0.72)
    r = d / 2 - 0.01
    # Hex grid of small dimples (in box-height units; u = 0.5 + dx / aspect).
    for row in range(-4, 5):
        for col in range(-4, 5):
            dx, dy = (col + 0.5 * (row % 2)) * 0.085, row * 0.075
            if dx * dx + dy * dy < (0.82 * r) ** 2:
                pen.circle(0.5 + dx / 0.72, d / 2 + dy, 0.022, dimple, outline=None)


def gas_pump(pen: Pen, colour, rng):
    """Tall box with a lit display, a nozzle holster and a black hose."""
    pen.rect(0.0, 0.92, 0.82, 1.0, (110, 110, 110, 255))                 # plinth
    pen.rect(0.06, 0.06, 0.74, 0.93, rgba(colour))                       # body
    pen.rect(0.02, 0.0, 0.78, 0.09, shade(colour, 0.55))                 # cap
    pen.rect(0.16, 0.15, 0.64, 0.38, (225, 245, 225, 255))               # display
    for v in (0.21, 0.27, 0.33):
        pen.line([(0.22, v), (0.58, v)], fill=(40, 60, 40, 255), width=0.03)
    pen.rect(0.18, 0.50, 0.62, 0.78, shade(colour, 0.75))                # lower panel
    pen.line([(0.80, 0.45), (0.96, 0.52), (0.97, 0.80), (0.86, 0.88)], fill=(20, 20, 20, 255),
             width=0.07)                                                # hose
    pen.rect(0.72, 0.38, 0.88, 0.50, (40, 40, 40, 255))                  # nozzle holster


def garbage_truck(pen: Pen, colour, rng):
    """Big box body with ribs, a cab with a window, three black wheels."""
    pen.rect(0.0, 0.03, 0.68, 0.76, rgba(colour))                        # box body
    for u in (0.17, 0.34, 0.51):
        pen.line([(u, 0.10), (u, 0.70)], fill=shade(colour, 0.6), width=0.04)
    pen.rect(0.68, 0.30, 0.98, 0.76, shade(colour, 1.2), radius=0.06)     # cab
    pen.rect(0.75, 0.36, 0.93, 0.52, (170, 215, 240, 255))               # window
    pen.rect(0.0, 0.72, 1.0, 0.80, (70, 70, 70, 255))                    # chassis
    for u in (0.16, 0.40, 0.84):
        pen.circle(u, 0.84, 0.15, (20, 20, 20, 255))
        pen.circle(u, 0.84, 0.06, (170, 170, 170, 255), outline=None)


def tench(pen: Pen, colour, rng):
    """Side-view fish: oval body, forked tail fin, dorsal fin, eye."""
    fin = shade(colour, 0.6)
    pen.poly([(0.78, 0.5), (1.0, 0.12), (0.92, 0.5), (1.0, 0.88)], fin)   # tail
    pen.poly([(0.36, 0.26), (0.50, 0.04), (0.62, 0.26)], fin)            # dorsal fin
    pen.poly([(0.40, 0.74), (0.48, 0.95), (0.56, 0.74)], fin)            # pelvic fin
    pen.ellipse(0.05, 0.20, 0.84, 0.80, rgba(colour))                    # body
    pen.ellipse(0.18, 0.52, 0.70, 0.74, shade(colour, 1.35), outline=None)  # belly
    pen.arc(0.18, 0.30, 0.32, 0.70, 300, 60, width=0.035)                # gill
    pen.circle(0.15, 0.42, 0.07, (255, 255, 255, 255))                   # eye
    pen.circle(0.14, 0.42, 0.035, (0, 0, 0, 255), outline=None)


def french_horn(pen: Pen, colour, rng):
    """Coiled tube ring with valves and a big flared bell opening to the right."""
    body, dark = rgba(colour), shade(colour, 0.55)
    pen.ellipse(0.02, 0.10, 0.66, 0.90, None, outline=OUTLINE, width=pen.width(0.16))
    pen.ellipse(0.04, 0.12, 0.64, 0.88, None, outline=body, width=pen.width(0.11))
    pen.ellipse(0.16, 0.30, 0.50, 0.70, None, outline=body, width=pen.width(0.06))
    pen.poly([(0.52, 0.45), (0.72, 0.40), (0.96, 0.18), (0.96, 0.98), (0.72, 0.66), (0.52, 0.60)],
             body)                                                       # bell
    pen.ellipse(0.88, 0.18, 1.0, 0.98, dark)                              # bell mouth
    pen.rect(0.24, 0.42, 0.42, 0.58, dark)                                # valves
    pen.line([(0.12, 0.16), (0.02, 0.0)], width=0.05)                     # mouthpiece


def chain_saw(pen: Pen, colour, rng):
    """Engine body with a handle loop and a long grey bar with a toothed chain."""
    bar = (175, 175, 180, 255)
    pen.rect(0.34, 0.42, 1.0, 0.68, bar, radius=0.12)                     # guide bar
    teeth = [(0.38 + i * 0.04, 0.42 - 0.06 * (i % 2)) for i in range(16)]
    pen.line(teeth, fill=(40, 40, 40, 255), width=0.05)
    teeth = [(0.38 + i * 0.04, 0.68 + 0.06 * (i % 2)) for i in range(16)]
    pen.line(teeth, fill=(40, 40, 40, 255), width=0.05)
    pen.rect(0.0, 0.28, 0.40, 0.92, rgba(colour), radius=0.10)            # engine
    pen.rect(0.06, 0.0, 0.34, 0.40, None, outline=OUTLINE, radius=0.08)   # handle loop
    pen.line([(0.06, 0.05), (0.34, 0.05)], width=0.1)
    pen.rect(0.08, 0.52, 0.28, 0.70, shade(colour, 0.55))                 # vents


def english_springer(pen: Pen, colour, rng):
    """Side-view dog on four legs, white coat with coloured patches and a long floppy ear."""
    white, patch = (245, 243, 238, 255), rgba(colour)
    for u in (0.20, 0.30, 0.58, 0.68):
        pen.rect(u, 0.58, u + 0.08, 1.0, white)                           # legs
    pen.line([(0.18, 0.42), (0.04, 0.26)], fill=patch, width=0.07)        # tail
    pen.ellipse(0.14, 0.30, 0.80, 0.70, white)                            # body
    pen.ellipse(0.30, 0.30, 0.60, 0.52, patch, outline=None)              # back patch
    pen.ellipse(0.18, 0.46, 0.32, 0.62, patch, outline=None)              # hip patch
    pen.poly([(0.66, 0.42), (0.74, 0.18), (0.84, 0.22), (0.80, 0.46)], white)  # neck
    pen.ellipse(0.68, 0.06, 0.92, 0.36, white)                            # head
    pen.ellipse(0.82, 0.18, 1.0, 0.34, white)                             # muzzle
    pen.ellipse(0.68, 0.06, 0.86, 0.20, patch, outline=None)              # head patch
    pen.ellipse(0.66, 0.12, 0.80, 0.50, patch)                            # floppy ear
    pen.circle(0.97, 0.22, 0.03, (20, 20, 20, 255), outline=None)          # nose
    pen.circle(0.85, 0.15, 0.025, (20, 20, 20, 255), outline=None)         # eye


def cassette_player(pen: Pen, colour, rng):
    """Box with a row of keys on top, a window with two tape reels."""
    for i in range(5):
        u = 0.10 + i * 0.16
        pen.rect(u, 0.02, u + 0.12, 0.18, (60, 60, 60, 255) if i % 2 else (200, 200, 200, 255))
    pen.rect(0.0, 0.15, 1.0, 1.0, rgba(colour), radius=0.08)               # body
    pen.rect(0.12, 0.34, 0.88, 0.80, (40, 40, 45, 255))                   # window
    pen.rect(0.30, 0.60, 0.70, 0.66, (110, 70, 40, 255), outline=None)    # tape
    for u in (0.32, 0.68):
        pen.circle(u, 0.57, 0.15, (235, 235, 235, 255))                   # reel
        pen.circle(u, 0.57, 0.05, (40, 40, 45, 255), outline=None)        # hub
    pen.rect(0.08, 0.86, 0.30, 0.94, shade(colour, 0.55), outline=None)   # label strip


def tower(pen: Pen, colour, rng):
    """Plain solid tall tower with battlements, slit windows and a door (no lattice)."""
    body = rgba(colour)
    for u in (0.05, 0.40, 0.75):
        pen.rect(u, 0.0, u + 0.20, 0.10, body)                            # merlons
    pen.rect(0.05, 0.08, 0.95, 0.16, shade(colour, 0.7))                  # parapet
    pen.rect(0.12, 0.15, 0.88, 1.0, body)                                 # shaft
    for v in (0.28, 0.48, 0.68):
        pen.rect(0.42, v, 0.58, v + 0.08, (30, 30, 40, 255), outline=None)  # slit windows
    pen.rect(0.32, 0.86, 0.68, 1.0, (70, 45, 30, 255))                    # door


def apple(pen: Pen, colour, rng):
    """Round shaded fruit with a dip at the top, a brown stem and a green leaf."""
    dark, base, light = shade(colour, 0.6), rgba(colour), shade(colour, 1.55)
    pen.ellipse(0.04, 0.22, 0.62, 1.0, dark)                              # shadowed lobes
    pen.ellipse(0.38, 0.22, 0.96, 1.0, dark)
    pen.ellipse(0.06, 0.23, 0.58, 0.92, base, outline=None)              # lit body
    pen.ellipse(0.40, 0.23, 0.88, 0.92, base, outline=None)
    pen.ellipse(0.16, 0.34, 0.30, 0.56, light, outline=None)             # highlight
    pen.line([(0.50, 0.34), (0.56, 0.04)], fill=(100, 60, 25, 255), width=0.06)  # stem
    pen.poly([(0.56, 0.16), (0.70, 0.02), (0.90, 0.06), (0.74, 0.20)], (60, 160, 50, 255))  # leaf


# --- instances ----------------------------------------------------------------------------------

def snoopy(pen: Pen, colour, rng):
    """A white cartoon dog, upright, big round head and long snout, BLACK ears, black nose."""
    white, black = (255, 255, 255, 255), (10, 10, 10, 255)
    pen.ellipse(0.22, 0.52, 0.68, 1.0, white)                             # sitting body
    pen.ellipse(0.46, 0.88, 0.84, 1.0, white)                             # foot
    pen.ellipse(0.12, 0.04, 0.70, 0.58, white)                            # head
    pen.ellipse(0.48, 0.16, 0.98, 0.46, white)                            # snout
    pen.ellipse(0.48, 0.20, 0.70, 0.42, white, outline=None)              # merge snout and head
    pen.circle(0.93, 0.24, 0.06, black, outline=None)                     # nose
    pen.ellipse(0.08, 0.14, 0.34, 0.66, black)                            # black ear
    pen.ellipse(0.52, 0.14, 0.58, 0.26, black, outline=None)              # eye
    pen.rect(0.30, 0.54, 0.62, 0.60, (200, 30, 30, 255), outline=None)    # red collar


def eiffel_tower(pen: Pen, colour, rng):
    """Bronze lattice tower: tapering legs, truss crosses, platforms and an arch at its base."""
    bronze = rgba(colour)
    def half_width(v):
        # Curved taper: wide at the base, a needle at the top.
        return 0.04 + 0.46 * (v ** 2.2)
    levels = [0.06, 0.16, 0.26, 0.36, 0.46, 0.56, 0.66, 0.74]
    for v0, v1 in zip(levels, levels[1:]):
        a0, a1 = half_width(v0), half_width(v1)
        pen.line([(0.5 - a0, v0), (0.5 + a1, v1)], fill=bronze, width=0.035)
        pen.line([(0.5 + a0, v0), (0.5 - a1, v1)], fill=bronze, width=0.035)
    for side in (-1, 1):
        edge = [(0.5 + side * half_width(v / 20), v / 20) for v in range(1, 21)]
        pen.line(edge, fill=bronze, width=0.07)                           # outer leg edges
        pen.line([(0.5 + side * half_width(0.80), 0.80), (0.5 + side * 0.24, 1.0)],
                 fill=bronze, width=0.06)                                 # inner leg edges
        pen.line([(0.5 + side * 0.44, 0.86), (0.5 + side * 0.30, 0.94)], fill=bronze, width=0.04)
    pen.arc(0.24, 0.80, 0.76, 1.22, 180, 360, fill=bronze, width=0.05)   # base arch
    for v, thick in ((0.74, 0.07), (0.46, 0.05), (0.16, 0.05)):
        a = half_width(v) + 0.05
        pen.line([(0.5 - a, v), (0.5 + a, v)], fill=shade(colour, 0.7), width=thick)  # platforms
    pen.line([(0.5, 0.0), (0.5, 0.08)], fill=bronze, width=0.04)          # antenna


def notre_dame(pen: Pen, colour, rng):
    """Grey/beige gothic facade: two square flat-topped towers, a rose window, three portals."""
    stone, dark = rgba(colour), shade(colour, 0.6)
    pen.rect(0.22, 0.28, 0.78, 1.0, stone)                                # central block
    pen.rect(0.02, 0.0, 0.33, 1.0, stone)                                 # left tower
    pen.rect(0.67, 0.0, 0.98, 1.0, stone)                                 # right tower
    for u in (0.08, 0.19, 0.73, 0.84):
        pen.rect(u, 0.08, u + 0.07, 0.36, (45, 45, 60, 255), outline=None)  # tall belfry slits
    pen.rect(0.02, 0.40, 0.98, 0.45, dark, outline=None)                  # gallery band
    pen.circle(0.5, 0.58, 0.12, (70, 60, 130, 255))                       # rose window
    for k in range(6):
        ang = k * math.pi / 6
        du, dv = 0.11 * math.cos(ang), 0.11 * math.sin(ang)
        pen.line([(0.5 - du, 0.58 - dv), (0.5 + du, 0.58 + dv)], fill=(200, 180, 90, 255),
                 width=0.015)
    for u0 in (0.08, 0.40, 0.72):
        pen.poly([(u0, 1.0), (u0, 0.84), (u0 + 0.10, 0.75), (u0 + 0.20, 0.84), (u0 + 0.20, 1.0)],
                 (50, 40, 40, 255))                                       # pointed portals


def apple_logo(pen: Pen, colour, rng):
    """Flat one-colour apple emblem with a bite out of the right side and a detached leaf."""
    flat = rgba(colour)
    pen.ellipse(0.02, 0.26, 0.58, 1.0, flat, outline=None)
    pen.ellipse(0.42, 0.26, 0.98, 1.0, flat, outline=None)
    pen.ellipse(0.10, 0.36, 0.90, 0.96, flat, outline=None)
    pen.ellipse(0.40, 0.20, 0.60, 0.34, (0, 0, 0, 0), outline=None)       # dip at the top
    pen.ellipse(0.82, 0.40, 1.10, 0.70, (0, 0, 0, 0), outline=None)       # the bite
    pen.poly([(0.46, 0.22), (0.50, 0.08), (0.64, 0.0), (0.62, 0.12)], flat, outline=None)  # leaf


# name -> (width / height aspect of the glyph box, drawing function)
GLYPHS = {
    "church": (0.95, church),
    "parachute": (0.85, parachute),
    "golf ball": (0.72, golf_ball),
    "gas pump": (0.62, gas_pump),
    "garbage truck": (1.6, garbage_truck),
    "tench": (1.9, tench),
    "french horn": (1.15, french_horn),
    "chain saw": (2.1, chain_saw),
    "english springer": (1.45, english_springer),
    "cassette player": (1.45, cassette_player),
    "tower": (0.40, tower),
    "apple": (0.92, apple),
    "snoopy": (0.85, snoopy),
    "eiffel tower": (0.55, eiffel_tower),
    "notre dame": (1.0, notre_dame),
    "apple logo": (0.85, apple_logo),
}

"""The mini world: a procedurally rendered concept world mirroring the paper's catalog.

Twelve object glyphs (the Imagenette ten plus tower and apple), four named instances that
specialise a base (snoopy, eiffel tower, notre dame, apple logo) and four styles, drawn with
PIL/numpy at 64x64 with captions and boxes. The public API lives in ``bench.miniworld.render``
(``render``, ``render_scene``, ``random_sample``, ``write_renders``); ``python -m
bench.miniworld.sheet OUT.png`` writes a contact sheet to look at every concept and style.
"""

"""Writes tests/fixtures/audio/voice_6s.ogg: a 6-second Ogg Vorbis reference clip
(a vowel-like harmonic tone with a slow tremolo, 16 kHz stereo) for the upload
decoding tests. Ogg Vorbis is the one accepted upload format voxpool has no encoder
for, so this clip is committed. Run with any Python that has numpy and soundfile:

    /tmp/cbvenv/bin/python tools/reference_clip_fixture.py
"""
import numpy as np
import soundfile as sf

RATE = 16_000
t = np.arange(int(6.0 * RATE)) / RATE
tone = sum(np.sin(2 * np.pi * 150.0 * k * t) / k for k in range(1, 6))
tone *= 0.2 * (0.6 + 0.4 * np.sin(2 * np.pi * 3.0 * t))
stereo = np.stack([tone, 0.5 * tone], axis=1).astype(np.float32)
sf.write("tests/fixtures/audio/voice_6s.ogg", stereo, RATE, format="OGG", subtype="VORBIS")

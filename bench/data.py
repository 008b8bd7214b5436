"""Deterministic benchmark data: chat messages and knowledge atoms made from a small vocabulary."""

from __future__ import annotations

import random
from typing import Any

_WORDS = (
    "pump valve motor bearing seal pressure flow sensor controller relay fuse breaker voltage current "
    "torque gearbox coupling alignment vibration temperature overheating lubrication filter hydraulic "
    "pneumatic actuator encoder drive inverter conveyor compressor chiller boiler burner thermostat "
    "calibration firmware network protocol modbus profinet ethernet fault alarm reset interlock safety "
    "maintenance inspection replacement procedure schedule warranty manual specification tolerance "
    "clearance impeller cavitation priming suction discharge manifold gasket corrosion leak"
).split()
_MANUFACTURERS = ("Siemens", "ABB", "Schneider", "Grundfos", "Danfoss", "Rockwell", None)
_ATOM_TYPES = ("concept", "procedure", "specification", "pattern", "fault", "reference")
SEARCH_QUERIES = (
    "pump cavitation", "motor overheating", "valve leak", "pressure sensor calibration",
    "inverter fault reset", "bearing vibration", "hydraulic filter replacement", "modbus network alarm",
)


_SYLLABLES = ("ka", "lo", "mi", "ter", "an", "dro", "vel", "su", "pri", "mon", "ex", "gal", "tu", "rin", "bo", "ce")
# Filler words: a large vocabulary, so that a domain term is rare enough for
# full-text search to be selective (about 20% of atoms hold a given term).
_FILLER = sorted({a + b + c for a in _SYLLABLES for b in _SYLLABLES for c in _SYLLABLES})
_DOMAIN_SHARE = 0.1


def sentence(rng: random.Random, words: int) -> str:
    picked = [rng.choice(_WORDS) if rng.random() < _DOMAIN_SHARE else rng.choice(_FILLER) for _ in range(words)]
    return " ".join(picked).capitalize() + "."


def messages(count: int, seed: int = 0) -> list[dict[str, Any]]:
    """Return `count` chat messages as the library's dicts, alternating user and assistant (~60 words each)."""
    rng = random.Random(seed)
    return [{"role": "user" if i % 2 == 0 else "assistant", "content": sentence(rng, 60), "metadata": {"turn": i}}
            for i in range(count)]


def atoms(count: int, seed: int = 1) -> list[dict[str, Any]]:
    """Return `count` knowledge atoms as dicts of the `KnowledgeAtom` fields."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        out.append({
            "atom_id": f"bench-atom-{i:05d}",
            "atom_type": _ATOM_TYPES[i % len(_ATOM_TYPES)],
            "title": sentence(rng, 6),
            "summary": sentence(rng, 20),
            "content": " ".join(sentence(rng, 12) for _ in range(12)),
            "manufacturer": rng.choice(_MANUFACTURERS),
            "keywords": rng.sample(_WORDS, 4),
            "source_url": f"https://example.com/kb/{i}",
            "quality_score": round(rng.random(), 3),
        })
    return out

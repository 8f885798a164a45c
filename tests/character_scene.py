"""Characters shared by the character tests: made once per test session (a fit takes seconds)."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy.spatial import cKDTree

from mimic.character import synthetic as S
from mimic.character.fit import Fit, fit_character
from mimic.synth import head as H
from mimic.synth.rig import identity_template

MODEL = H.build_head(600)    # the demo model's topology (602 vertices): its landmark table is built in
SOURCE_SIZE = 1400
SOURCE = H.build_head(SOURCE_SIZE)  # the characters' own base topology, remeshed again


@lru_cache(maxsize=1)
def imported_character() -> S.Character:
    """Another speaker's face, remeshed (4x the triangles, jittered), in centimetres, at x = 3 m,
    imported from a Y-up file (its object matrix turns it upright)."""
    return S.make_character(SOURCE, identity_template(SOURCE, 7), levels=1, units=100.0,
                            location=(300.0, 0.0, 0.0), y_up_import=True, seed=1)


@lru_cache(maxsize=1)
def imported() -> tuple[S.Character, Fit]:
    """imported_character() fitted by the model head, its landmarks found automatically."""
    character = imported_character()
    fit = fit_character(MODEL.vertices, MODEL.faces, character.vertices, character.faces,
                        character_matrix=character.matrix)
    return character, fit


def lips_of(character: S.Character) -> np.ndarray:
    """Character vertices on the lips (of the head they were made from)."""
    on = np.zeros(SOURCE.vertex_count)
    on[SOURCE.regions["lips"]] = 1.0
    return (character.truth @ on) > 0.99


def meeting_pairs(character: S.Character) -> np.ndarray:
    """(P, 2) character vertices that coincide at rest on the lips (upper and lower lip edge)."""
    pairs = np.array(sorted(cKDTree(character.vertices).query_pairs(1e-6 * character.units)))
    lips = lips_of(character)
    return pairs[lips[pairs[:, 0]] & lips[pairs[:, 1]]]

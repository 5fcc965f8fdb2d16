"""The paper's published figures, to print beside stnlab's own (``stnlab-report``).

Jaderberg, Simonyan, Zisserman, Kavukcuoglu, "Spatial Transformer Networks", NIPS 2015.

THESE ARE THE PAPER'S NUMBERS ON FULL MNIST (60,000 training digits, 150k SGD iterations,
mean of 3 seeds), test error in %. A short run, or a run on the 5,000-digit sample, is not
expected to reach them: they are a reference, not a target or a check.

Keys are ``(row, distortion)``: rows are the report's model labels ("CNN", "ST-CNN Aff", ...),
distortions the canonical names of ``stnlab.data.distortions`` ("R", "RTS", "P", "E",
"cluttered", "addition"). Confidence as in the project's notes on the paper: [V] checked
against the paper's text, [S] two or more agreeing secondary sources.
"""

from __future__ import annotations

CITATION = "Jaderberg et al., Spatial Transformer Networks, NIPS 2015"

# Table 1, distorted MNIST, test error % (mean of 3 seeds) [S].
_TABLE1_ROWS: dict[str, tuple[float, float, float, float]] = {
    #               R    RTS    P     E
    "FCN":         (2.1, 5.2, 3.1, 3.2),
    "CNN":         (1.2, 0.8, 1.5, 1.4),
    "ST-FCN Aff":  (1.2, 0.8, 1.5, 2.7),
    "ST-FCN Proj": (1.3, 0.9, 1.4, 2.6),
    "ST-FCN TPS":  (1.1, 0.8, 1.4, 2.4),
    "ST-CNN Aff":  (0.7, 0.5, 0.8, 1.2),
    "ST-CNN Proj": (0.8, 0.6, 0.8, 1.3),
    "ST-CNN TPS":  (0.7, 0.5, 0.8, 1.1),
}
TABLE1: dict[tuple[str, str], float] = {
    (row, dist): err
    for row, errs in _TABLE1_ROWS.items()
    for dist, err in zip(("R", "RTS", "P", "E"), errs, strict=True)
}

# Translated + cluttered MNIST, 60x60 canvas, test error % [V]. The notes do not name the
# transform of the ST rows: paper_error() shows these beside any linear family's rows.
CLUTTERED: dict[tuple[str, str], float] = {
    ("FCN", "cluttered"): 13.2,
    ("CNN", "cluttered"): 3.5,
    ("ST-FCN", "cluttered"): 2.0,
    ("ST-CNN", "cluttered"): 1.7,
}

# MNIST addition (two RTS digits as two channels, 19 classes), error % [V]. Only the rows whose
# model is unambiguous: FCN, CNN and two parallel transformers in front of the FCN.
ADDITION: dict[tuple[str, str], float] = {
    ("FCN", "addition"): 47.7,
    ("CNN", "addition"): 14.7,
    ("ST-FCN", "addition"): 18.5,  # the best single-transformer FCN of the paper's table
    ("2xST-FCN", "addition"): 5.8,
}

# SVHN multi-digit, 64x64 crops, SEQUENCE error % [V for Multi; R otherwise]. Shown beside the
# `svhn` column and beside the offline twin `multidigit`: that is MNIST digits, a DIFFERENT
# data set, so there the figure is a reference only (stnlab-report says so under its table).
SVHN: dict[str, float] = {"CNN": 4.0, "ST-CNN Single": 3.7, "ST-CNN Multi": 3.6}
SEQUENCE_DATA = ("svhn", "multidigit")


def paper_seq_error(row: str, distortion: str) -> float | None:
    """The paper's SVHN 64px sequence error (%) for a report row, on sequence data, or None."""
    return SVHN.get(row) if distortion in SEQUENCE_DATA else None

# Co-localisation, 84x84 canvas: % of crops with IoU > 0.5 [V]; cluttered: the range over the
# digit classes (75-93), translated: 100 for every class.
COLOCALISATION: dict[str, float | str] = {"coloc_translated": 100.0, "coloc_cluttered": "75-93"}


def paper_coloc_iou(distortion: str) -> float | str | None:
    """The paper's co-localisation figure (% of crops with IoU > 0.5) for a column, or None."""
    return COLOCALISATION.get(distortion)


PAPER_ERROR: dict[tuple[str, str], float] = {**TABLE1, **CLUTTERED, **ADDITION}
"""All figures: (row, distortion) -> the paper's test error in % (full MNIST)."""


def paper_error(row: str, distortion: str) -> float | None:
    """The paper's test error (%) for a report row and distortion, or None.

    A row with a transform name falls back to the row without one ("ST-CNN Att" -> "ST-CNN")
    for the studies whose figures name no transform (cluttered, addition).
    """
    if (row, distortion) in PAPER_ERROR:
        return PAPER_ERROR[(row, distortion)]
    base, _, transform = row.rpartition(" ")
    if base.startswith(("ST-", "2xST-")) and transform in ("T", "Att", "Crop", "Sim", "Aff"):
        return PAPER_ERROR.get((base, distortion))
    return None

"""The rows of scripts/bench_quality.py's tables: which recipe each row trains and with what
overrides (``PLANS``, by ``--plan``), ordered as the runs go; the reasons and results are in
docs/benchmarks.md ("Representation quality at equal budget")."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

# The ablations start from configs/bloodmnist.yaml as the issue ran it (before the small-data
# recipe became its default); a frozen copy, read in its place, keeps their cache keys.
ISSUE_CONFIG_FILE = "scripts/quality_configs/bloodmnist_issue12.yaml"
# The issue's medssl command: the shipped config with a 10-step warm-up and a 4096-row queue.
ISSUE_OVERRIDES = ("optim.warmup_steps=10", "support_set.size=4096")
# configs/bloodmnist.yaml before the eighth round took the colour operations out of its
# augmentation; the ablations on "the shipped config" read this frozen copy (same keys)
ROUND7_CONFIG_FILE = "scripts/quality_configs/bloodmnist_round7.yaml"


@dataclass(frozen=True)
class Row:
    """One line of a table: a recipe (``kind``) and what sets it apart."""

    name: str
    kind: str  # medssl | lightly_simclr | lightly_nnclr (+ _no_colour) | random | supervised | colour_histogram
    overrides: Tuple[str, ...] = ()  # medssl dotted config overrides
    why: str = ""
    config_file: Optional[str] = None  # read instead of the shipped config (same name in the spec)


def medssl_row(objective: str, *extra: str, name: Optional[str] = None, why: str = "") -> Row:
    """An ablation row: the issue-time BloodMNIST config with ``extra`` overrides."""
    return Row(name or f"medssl {objective}", "medssl", (f"objective.name={objective}", *extra), why,
               config_file=ISSUE_CONFIG_FILE)


def shipped_row(objective: str, *extra: str, name: str, why: str = "") -> Row:
    """An ablation row on BloodMNIST's config as shipped in rounds four to seven (recipe
    small-data, the natural preset with its colour operations), as those rounds' test tables
    trained it."""
    return Row(name, "medssl", (f"objective.name={objective}", *extra), why, config_file=ROUND7_CONFIG_FILE)


# an override value "epochs:E": E epochs of the data set's train split, in steps (bench_quality's runs_of)
EPOCHS_TOKEN = "epochs:"

# the support-set objectives, in the order their rows run (the one the target names first)
NEIGHBOUR_OBJECTIVES = ("pnnclr", "psm", "snclr", "nnclr")

LIGHTLY_HEADS = ("model.proj_hidden=512", "model.proj_dim=128", "model.pred_hidden=512")
CONSTANT_LR = ("optim.warmup_steps=0", "optim.final_lr_ratio=1.0")
# lightly's augmentation as far as the natural preset reaches (no vertical flip there)
LIGHTLY_LIKE_AUG = ("augment.params={scale: [0.2, 1.0], saturation: 0.2, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5]}",)
# the same with D4 (lightly's recipe flips vertically too)
LIGHTLY_LIKE_AUG_D4 = ("augment.preset=histo", "augment.params={scale: [0.2, 1.0], d4: true, hed_p: 0.0, brightness: 0.4, "
                       "contrast: 0.4, saturation: 0.2, hue: 0.1, grayscale_p: 0.2, mean: [0.5, 0.5, 0.5], "
                       "std: [0.5, 0.5, 0.5]}")
# D4 and a crop that keeps the centred cell (the histo preset's geometry, natural colour ops)
D4_CENTRE = ("augment.preset=histo", "augment.params={scale: [0.3, 1.0], keep_center: 14, d4: true, hed_p: 0.0, "
             "brightness: 0.4, contrast: 0.4, saturation: 0.4, hue: 0.1, grayscale_p: 0.2}")
D4_ONLY = ("augment.preset=histo", "augment.params={scale: [0.3, 1.0], d4: true, hed_p: 0.0, "
           "brightness: 0.4, contrast: 0.4, saturation: 0.4, hue: 0.1, grayscale_p: 0.2}")
# every factor of lightly's SimCLR recipe that helped or was neutral alone, for any objective
# (its temperature is the objective's own: the NN papers tune theirs)
RECIPE = (*LIGHTLY_HEADS, *CONSTANT_LR, "optim.weight_decay=0.0", *LIGHTLY_LIKE_AUG)
LIGHTLY_PROJECTOR = ("model.proj_layers=2", "model.proj_last_bn=false")  # SimCLRProjectionHead(F, 512, 128)

# the histo preset's light colour jitter on the natural preset (no grayscale), and with D4
LIGHT_COLOUR = ("augment.params={scale: [0.3, 1.0], brightness: 0.2, contrast: 0.2, saturation: 0.2, hue: 0.05, "
                "grayscale_p: 0.0}",)
LIGHT_COLOUR_D4 = ("augment.preset=histo", "augment.params={scale: [0.3, 1.0], hed_p: 0.0}")
# no colour operation at all: crops, flips (and D4)
NO_COLOUR = ("augment.params={scale: [0.3, 1.0], jitter_p: 0.0, grayscale_p: 0.0}",)
NO_COLOUR_D4 = ("augment.preset=histo", "augment.params={scale: [0.3, 1.0], hed_p: 0.0, jitter_p: 0.0}")

PLANS: Dict[str, List[Row]] = {
    "table": [
        *(Row(f"medssl {m}", "medssl", (f"objective.name={m}",), "shipped config") for m in
          ("simclr", "nnclr", "pnnclr", "snclr", "psm")),
        Row("lightly simclr", "lightly_simclr", why="lightly 1.6 recipe"),
        Row("lightly nnclr", "lightly_nnclr", why="lightly 1.6 recipe"),
        Row("random init", "random"),
        Row("supervised", "supervised", why="cross-entropy on all train labels"),
        Row("colour histogram", "colour_histogram", why="no network: 8-bin histogram, mean and std per channel"),
    ],
    # ordered by how much each row is expected to discriminate: the runs go in this order
    "ablate-simclr": [
        Row("lightly simclr", "lightly_simclr", why="lightly 1.6 recipe"),
        medssl_row("simclr", *ISSUE_OVERRIDES, name="medssl simclr (issue)", why="baseline"),
        medssl_row("simclr", *ISSUE_OVERRIDES, *LIGHTLY_HEADS, *CONSTANT_LR, "objective.tau=0.5", *LIGHTLY_LIKE_AUG,
                   "optim.weight_decay=0.0", name="+ lightly's recipe", why="all of the factors below together"),
        medssl_row("simclr", *ISSUE_OVERRIDES, "objective.tau=0.5", name="+ tau 0.5", why="lightly's temperature"),
        medssl_row("simclr", *ISSUE_OVERRIDES, *CONSTANT_LR, name="+ constant lr", why="no warm-up, no cosine"),
        medssl_row("simclr", *ISSUE_OVERRIDES, *LIGHTLY_HEADS, name="+ heads 512/128", why="head widths"),
        medssl_row("simclr", *ISSUE_OVERRIDES, *LIGHTLY_LIKE_AUG, name="+ lightly-like aug",
                   why="crop 0.2, saturation 0.2, normalise 0.5/0.5"),
        medssl_row("simclr", *ISSUE_OVERRIDES, *D4_CENTRE, name="+ D4 + centre crop", why="blood-smear priors"),
        medssl_row("simclr", *ISSUE_OVERRIDES, *D4_ONLY, name="+ D4", why="D4 without the centre constraint"),
        medssl_row("simclr", *ISSUE_OVERRIDES, "augment.device=batch", name="+ batched aug",
                   why="batched vs per-image augmentation"),
        medssl_row("simclr", *ISSUE_OVERRIDES, "optim.weight_decay=0.0", name="+ wd 0", why="lightly: Adam, wd 0"),
        medssl_row("simclr", *ISSUE_OVERRIDES, *LIGHTLY_HEADS, *CONSTANT_LR, "objective.tau=0.5", "optim.weight_decay=0.0",
                   *LIGHTLY_LIKE_AUG_D4, name="+ lightly's recipe + D4", why="lightly's flips include the vertical one"),
    ],
    # the recipe candidates for the small-data defaults, most informative first
    "ablate-recipe": [
        medssl_row("simclr", *ISSUE_OVERRIDES, *RECIPE, "objective.tau=0.5", *LIGHTLY_PROJECTOR,
                   name="simclr + lightly's recipe + projector", why="lightly's 2-layer projector, no output BN"),
        medssl_row("pnnclr", *ISSUE_OVERRIDES, *RECIPE, name="pnnclr + recipe", why="the recipe, pNNCLR's own tau"),
        medssl_row("pnnclr", *ISSUE_OVERRIDES, *RECIPE, "objective.min_fill=1.0", name="pnnclr + recipe + queue warm-up",
                   why="in-batch positives until the queue is full (32 steps)"),
        medssl_row("nnclr", *ISSUE_OVERRIDES, *RECIPE, name="nnclr + recipe", why="the recipe"),
        medssl_row("snclr", *ISSUE_OVERRIDES, *RECIPE, name="snclr + recipe", why="the recipe"),
        medssl_row("psm", *ISSUE_OVERRIDES, *RECIPE, name="psm + recipe", why="the recipe"),
        medssl_row("pnnclr", *ISSUE_OVERRIDES, *CONSTANT_LR, name="pnnclr + constant lr",
                   why="the one factor that helped SimCLR alone"),
        medssl_row("pnnclr", *ISSUE_OVERRIDES, *RECIPE, "objective.tau=0.2", name="pnnclr + recipe + tau 0.2",
                   why="temperature"),
        medssl_row("pnnclr", *ISSUE_OVERRIDES, *RECIPE, "model.ema_base=0.9", name="pnnclr + recipe + ema 0.9",
                   why="a target that follows within 100 steps"),
        medssl_row("pnnclr", *ISSUE_OVERRIDES, *RECIPE, *LIGHTLY_PROJECTOR, name="pnnclr + recipe + projector",
                   why="lightly's 2-layer projector"),
    ],
    # how the views meet BatchNorm: one concatenated batch (medssl's default) or one forward
    # per view (lightly's loop), with the best recipes of the rounds before
    "ablate-views": [
        medssl_row("simclr", *ISSUE_OVERRIDES, *RECIPE[:-1], "objective.tau=0.5", *LIGHTLY_LIKE_AUG_D4,
                   "model.per_view_bn=true", name="simclr + recipe + D4 + per-view BN", why="lightly's BatchNorm batching"),
        medssl_row("pnnclr", *ISSUE_OVERRIDES, *RECIPE, "model.per_view_bn=true", name="pnnclr + recipe + per-view BN",
                   why="lightly's BatchNorm batching"),
        medssl_row("simclr", *ISSUE_OVERRIDES, *RECIPE, "objective.tau=0.5", "model.per_view_bn=true",
                   name="simclr + recipe + per-view BN", why="without D4"),
        medssl_row("pnnclr", *ISSUE_OVERRIDES, *RECIPE[:-1], *LIGHTLY_LIKE_AUG_D4, "model.per_view_bn=true",
                   name="pnnclr + recipe + D4 + per-view BN", why="both"),
    ],
    # the NN objectives at the temperature that helped SimCLR most (lightly's NTXentLoss default)
    "ablate-tau": [
        medssl_row("pnnclr", *ISSUE_OVERRIDES, *RECIPE, "objective.tau=0.5", name="pnnclr + recipe + tau 0.5",
                   why="tau 0.2 gave +0.008 / +0.003"),
        medssl_row("nnclr", *ISSUE_OVERRIDES, *RECIPE, "objective.tau=0.5", name="nnclr + recipe + tau 0.5",
                   why="lightly's NNCLR trains at 0.5"),
        medssl_row("psm", *ISSUE_OVERRIDES, *RECIPE, "objective.tau=0.5", name="psm + recipe + tau 0.5", why="temperature"),
        medssl_row("snclr", *ISSUE_OVERRIDES, *RECIPE, "objective.tau=0.5", name="snclr + recipe + tau 0.5",
                   why="temperature"),
    ],
    # pNNCLR's interpolation: alpha 1 is the query itself (no neighbour), 0 the neighbour
    "ablate-alpha": [
        medssl_row("pnnclr", *ISSUE_OVERRIDES, *RECIPE, "objective.alpha=0.75", name="pnnclr + recipe + alpha 0.75",
                   why="a quarter of the way to the neighbour"),
        medssl_row("pnnclr", *ISSUE_OVERRIDES, *RECIPE, "objective.alpha=0.5", name="pnnclr + recipe + alpha 0.5",
                   why="half way"),
        medssl_row("pnnclr", *ISSUE_OVERRIDES, *RECIPE, "objective.alpha=1.0", "objective.beta=0.0",
                   name="pnnclr + recipe + alpha 1, no noise", why="no neighbour at all: prediction vs EMA target"),
        medssl_row("pnnclr", *ISSUE_OVERRIDES, *RECIPE, "objective.alpha=1.0", "objective.beta=0.0", "model.ema_base=0.0",
                   name="pnnclr + recipe + alpha 1, no noise, ema base 0",
                   why="and a target that starts as the online network each step (cosine from 0 to 1)"),
    ],
    # every NN objective has a predictor head and SimCLR none; the third round left it the
    # untested difference (pNNCLR without a neighbour scored what it scores with them)
    "ablate-predictor": [
        shipped_row("pnnclr", "model.predictor=false", name="pnnclr (shipped) + no predictor",
                    why="the projections are the predictions"),
        medssl_row("pnnclr", *ISSUE_OVERRIDES, *RECIPE, "model.predictor=false", name="pnnclr + recipe + no predictor",
                   why="against pnnclr + recipe"),
        medssl_row("nnclr", *ISSUE_OVERRIDES, *RECIPE, "model.predictor=false", name="nnclr + recipe + no predictor",
                   why="against nnclr + recipe"),
        shipped_row("psm", "model.predictor=false", name="psm (shipped) + no predictor", why="against shipped psm"),
        shipped_row("snclr", "model.predictor=false", name="snclr (shipped) + no predictor", why="against shipped snclr"),
        medssl_row("pnnclr", *ISSUE_OVERRIDES, *RECIPE, "model.predictor=false", "model.ema_base=0.0",
                   name="pnnclr + recipe + no predictor, ema base 0", why="and a target that follows early"),
    ],
    # a one-epoch budget may want a larger step than lightly's (and the recipe's) Adam 1e-3
    "ablate-lr": [
        shipped_row("pnnclr", "optim.lr=3.0e-3", name="pnnclr (shipped) + lr 3e-3", why="against shipped pnnclr (1e-3)"),
        shipped_row("simclr", "optim.lr=3.0e-3", name="simclr (shipped) + lr 3e-3", why="against shipped simclr (1e-3)"),
        shipped_row("pnnclr", "model.predictor=false", "optim.lr=3.0e-3", name="pnnclr (shipped) + no predictor + lr 3e-3",
                    why="both"),
        shipped_row("pnnclr", "optim.lr=5.0e-4", name="pnnclr (shipped) + lr 5e-4", why="the other direction"),
    ],
    # lightly's NNCLR recipe led at 300 steps (round four): its factors one at a time on the
    # shipped NNCLR config, at 300 steps on val (docs/benchmarks.md, "Fifth round")
    "ablate-nn-lightly": [
        Row("lightly nnclr", "lightly_nnclr", why="lightly 1.6 recipe"),
        shipped_row("nnclr", name="nnclr (shipped)", why="baseline"),
        shipped_row("nnclr", "objective.tau=0.5", name="nnclr + tau 0.5", why="lightly's NTXentLoss temperature"),
        shipped_row("nnclr", *LIGHTLY_HEADS, name="nnclr + heads 512/128", why="lightly's NNCLR heads"),
        shipped_row("nnclr", "support_set.size=4096", name="nnclr + queue 4096", why="lightly's memory bank size"),
        shipped_row("nnclr", *LIGHTLY_LIKE_AUG_D4, name="nnclr + lightly aug + D4", why="lightly's augmentation"),
        shipped_row("nnclr", "optim.weight_decay=0.0", name="nnclr + wd 0", why="lightly: Adam without decay"),
        shipped_row("nnclr", "objective.tau=0.5", *LIGHTLY_HEADS, "support_set.size=4096", *LIGHTLY_LIKE_AUG_D4,
                    "optim.weight_decay=0.0", name="nnclr + all of lightly's", why="every factor above"),
        shipped_row("pnnclr", "objective.tau=0.5", *LIGHTLY_HEADS, "support_set.size=4096", *LIGHTLY_LIKE_AUG_D4,
                    "optim.weight_decay=0.0", name="pnnclr + all of lightly's", why="the same for pNNCLR"),
    ],
    # lightly's augmentation with D4 was the one factor of its NNCLR recipe that helped at 300
    # steps (GPU, val): the same on every shipped objective at 100 steps
    "ablate-aug": [
        *(shipped_row(m, *LIGHTLY_LIKE_AUG_D4, name=f"{m} + lightly aug + D4", why=f"against shipped {m}")
          for m in (*NEIGHBOUR_OBJECTIVES, "simclr")),
        # the baselines: the table's shipped runs (same keys, read from the cache)
        *(shipped_row(m, name=f"{m} (shipped)", why="baseline") for m in (*NEIGHBOUR_OBJECTIVES, "simclr")),
    ],
    # round four: neither the neighbours nor the predictor explain the one-epoch gap to
    # SimCLR; what is left is the loss form (one gradient-carrying side per pair). SimCLR's
    # own term added to each neighbour objective, at the shipped SimCLR's temperature (sixth
    # round; shipped since in recipe small-data, so "shipped" rows have it and the rows
    # without it are the earlier shipped configs)
    "ablate-instance": [
        *(shipped_row(m, name=f"{m} (shipped, instance term)", why=f"against {m} without it")
          for m in NEIGHBOUR_OBJECTIVES),
        *(shipped_row(m, "objective.instance_weight=0.0", name=f"{m} without the instance term",
                      why="baseline: the shipped config before the sixth round")
          for m in NEIGHBOUR_OBJECTIVES),
        shipped_row("simclr", name="simclr (shipped)", why="the instance term alone"),
        *(shipped_row("pnnclr", f"objective.instance_weight={w}", name=f"pnnclr + instance term x{w}",
                      why="the term's weight") for w in (0.5, 2.0)),
    ],
    # the instance term made pNNCLR level with SimCLR (sixth round); what else adds on top of
    # it, one factor at a time on the shipped pNNCLR (which has the term), 100 steps on val
    "ablate-on-instance": [
        shipped_row("pnnclr", name="pnnclr (shipped, instance term)", why="baseline"),
        shipped_row("pnnclr", *LIGHTLY_LIKE_AUG_D4, name="pnnclr + lightly aug + D4",
                    why="+0.013 / +0.005 without the term (fifth round)"),
        shipped_row("pnnclr", "objective.instance_tau=0.2", name="pnnclr + instance tau 0.2",
                    why="a sharper instance term"),
        shipped_row("pnnclr", "objective.tau=0.2", name="pnnclr + tau 0.2", why="the neighbour term's temperature (0.1)"),
        shipped_row("pnnclr", "support_set.size=4096", name="pnnclr + queue 4096",
                    why="a queue refreshed every 32 steps instead of once an epoch"),
        shipped_row("pnnclr", *LIGHTLY_LIKE_AUG_D4, "objective.instance_tau=0.2", "objective.tau=0.2",
                    name="pnnclr + aug D4 + both taus 0.2", why="the three rows above that gained on kNN at seed 0"),
    ],
    # the natural preset's colour operations (hue 0.1, saturation 0.4, grayscale p 0.2) were
    # never varied: on a blood smear the stain's colour tells cell types apart (eosinophil
    # granules, basophils; 30 colour-histogram numbers alone reach 0.80 with a 2 %-label probe
    # on val), so invariance to it may cost more than it teaches. The histo preset's light
    # colour jitter, and no colour operation at all, without and with D4; 100 steps on val
    "ablate-colour": [
        *(row for m in ("pnnclr", "simclr") for row in (
            shipped_row(m, name=f"{m} (shipped)", why="baseline"),
            shipped_row(m, "augment.params={scale: [0.3, 1.0], grayscale_p: 0.0}", name=f"{m} + no grayscale",
                        why="keep the stain's colour in every view"),
            shipped_row(m, *LIGHT_COLOUR, name=f"{m} + light colour", why="the histo preset's colour jitter"),
            shipped_row(m, *LIGHT_COLOUR_D4, name=f"{m} + light colour + D4", why="and its D4 flips"),
            shipped_row(m, *NO_COLOUR, name=f"{m} + no colour ops", why="crops and flips only"),
            shipped_row(m, *NO_COLOUR_D4, name=f"{m} + no colour ops + D4", why="crops and D4 only"),
        )),
        # the same prior given to the peer: is the gain the prior's or medssl's?
        Row("lightly simclr", "lightly_simclr", why="lightly 1.6 recipe"),
        Row("lightly simclr, no colour ops", "lightly_simclr_no_colour",
            why="lightly's recipe, its views keeping their colour (crops and both flips only)"),
    ],
    "ablate-nn": [
        Row("lightly nnclr", "lightly_nnclr", why="lightly 1.6 recipe"),
        medssl_row("nnclr", *ISSUE_OVERRIDES, name="medssl nnclr (issue)", why="baseline"),
        medssl_row("pnnclr", *ISSUE_OVERRIDES, name="medssl pnnclr (issue)", why="baseline"),
        medssl_row("nnclr", *ISSUE_OVERRIDES, "objective.tau=0.5", name="nnclr + tau 0.5", why="lightly's temperature"),
        medssl_row("nnclr", *ISSUE_OVERRIDES, *LIGHTLY_HEADS, name="nnclr + heads 512/128", why="head widths"),
        medssl_row("pnnclr", *ISSUE_OVERRIDES, "model.ema_base=0.9", name="pnnclr + ema 0.9",
                   why="EMA target that follows within 100 steps"),
        medssl_row("pnnclr", *ISSUE_OVERRIDES, "objective.queue_source=online", name="pnnclr + online queue",
                   why="queue of online predictions"),
        medssl_row("pnnclr", *ISSUE_OVERRIDES, "objective.tau=0.2", name="pnnclr + tau 0.2", why="temperature"),
        medssl_row("pnnclr", *ISSUE_OVERRIDES[:1], "support_set.size=1024", name="pnnclr + queue 1024",
                   why="a queue refreshed every 8 steps"),
    ],
    # issue 35: bf16 autocast on a CPU with native bf16 against float32, the shipped config
    # otherwise; both arms name their precision, so the rows do not depend on what
    # ``train.amp: auto`` picks on the machine that trains them
    "precision": [
        *(Row(f"medssl {m} {name}", "medssl", (f"objective.name={m}", f"train.amp={amp}"), why)
          for m in ("simclr", "pnnclr")
          for name, amp, why in (("fp32", "off", "float32 throughout"),
                                 ("bf16", "bf16", "bf16 autocast of the model's forward; loss, support set, EMA in float32"))),
    ],
    # issue 27: SimCLR and every neighbour objective at long budgets (--epochs 1 3 10 30), on
    # each data set's shipped config (same views for every row): the shipped recipe (with
    # SimCLR's instance term) and the paper form (instance_weight 0); same-image exclusion
    # on (the default since issue 27) for both
    "long": [
        Row("medssl simclr", "medssl", ("objective.name=simclr",), "shipped config"),
        *(row for m in NEIGHBOUR_OBJECTIVES for row in (
            Row(f"medssl {m}", "medssl", (f"objective.name={m}",), "shipped recipe (instance term)"),
            Row(f"{m} (paper form)", "medssl", (f"objective.name={m}", "objective.instance_weight=0.0"),
                "the paper's loss alone, same views and optimiser"),
        )),
    ],
    # issue 27, item 4 ("make them win"): the recipe options one at a time against the shipped
    # pNNCLR (or NNCLR / SNCLR / PSM where the option is theirs), on val only, at long budgets
    "ablate-long": [
        Row("medssl pnnclr", "medssl", ("objective.name=pnnclr",), "baseline (the long plan's row)"),
        Row("pnnclr, no same-image exclusion", "medssl",
            ("objective.name=pnnclr", "support_set.exclude_same_image=false"),
            "the look-up before issue 27: an older copy of the image itself may be its neighbour"),
        Row("nnclr, no same-image exclusion", "medssl",
            ("objective.name=nnclr", "support_set.exclude_same_image=false"),
            "against the long plan's medssl nnclr"),
        Row("pnnclr + instance term fading with view agreement", "medssl",
            ("objective.name=pnnclr", "objective.instance_schedule=purity"),
            "weight 1 - (label-free) agreement of the two views' nearest neighbours"),
        Row("pnnclr (paper form) after 1 epoch of SimCLR", "medssl",
            ("objective.name=pnnclr", "objective.instance_weight=0.0",
             f"objective.neighbour_warmup_steps={EPOCHS_TOKEN}1"),
            "neighbours only once SimCLR has shaped the embedding"),
        Row("pnnclr after 1 epoch of SimCLR", "medssl",
            ("objective.name=pnnclr", f"objective.neighbour_warmup_steps={EPOCHS_TOKEN}1"), "the same, recipe kept"),
        Row("nnclr + queue from an EMA target", "medssl", ("objective.name=nnclr", "objective.queue_source=target"),
            "a queue that drifts less between steps (pNNCLR's is the target's already)"),
        Row("pnnclr + queue 25 % of the data set", "medssl",
            ("objective.name=pnnclr", "support_set.size_fraction=0.25"),
            "a queue refreshed four times an epoch"),
        Row("pnnclr + queue 5 % of the data set", "medssl",
            ("objective.name=pnnclr", "support_set.size_fraction=0.05"),
            "refreshed twenty times an epoch"),
        Row("snclr + k 10", "medssl", ("objective.name=snclr", "objective.k=10"), "fewer, nearer soft neighbours"),
        Row("psm + band width 0.2", "medssl", ("objective.name=psm", "objective.a=0.2"), "a wider negative band"),
    ],
}

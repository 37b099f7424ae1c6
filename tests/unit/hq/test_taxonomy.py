"""Department names and tags normalise to one key per meaning, and the seeded taxonomy gives each name to one
department only."""

from __future__ import annotations

import pytest

from hq import taxonomy
from hq.taxonomy import lookup_keys, normalise


def test_nfkc_case_and_spaces_fold_to_one_key() -> None:
    assert normalise("  CARDIOLOGY ") == normalise("Cardiology") == normalise("ｃａｒｄｉｏｌｏｇｙ") == "cardiology"
    assert normalise("General\u3000 Surgery") == "general surgery"  # ideographic space, runs of spaces
    assert normalise("Ob/Gyn") == normalise("OB / GYN") == normalise("ob-gyn") == "ob gyn"
    assert normalise("A&E") == normalise("a and e")
    assert normalise("心内科") == "心内科" and normalise(" 心内科 ") == "心内科"
    assert normalise("！？") == ""


def test_words_around_a_department_name_are_tried_away() -> None:
    assert lookup_keys("Department of Cardiology") == ["department of cardiology", "cardiology"]
    assert lookup_keys("Cardiology Dept.") == ["cardiology dept", "cardiology"]
    assert lookup_keys("心内科室") == ["心内科室", "心内科"]
    assert lookup_keys("Cardiology") == ["cardiology"]
    assert lookup_keys("   ") == []


def test_the_seed_names_cardiology_in_chinese_and_english_as_one_department() -> None:
    cardiology = next(d for d in taxonomy.SEED if d.code == "cardiology")
    keys = taxonomy.seed_synonyms(cardiology)
    for name in ("心血管内科", "心内科", "心脏内科", "Cardiology", "cardiology", "Cardiovascular Medicine"):
        assert normalise(name) in keys


def test_every_common_department_is_seeded_in_both_languages() -> None:
    codes = {d.code for d in taxonomy.SEED}
    assert {"cardiology", "respiratory", "gastroenterology", "neurology", "neurosurgery", "nephrology",
            "endocrinology", "pediatrics", "obstetrics_gynecology", "emergency_medicine", "critical_care",
            "general_surgery", "orthopedics", "radiology", "dermatology", "ophthalmology", "otolaryngology",
            "psychiatry", "oncology", "infectious_diseases"} <= codes
    for d in taxonomy.SEED:
        assert d.name.isascii() and d.name_zh and not d.name_zh.isascii(), d


def test_no_name_means_two_departments() -> None:
    taxonomy.check_seed()
    clash = (taxonomy.SeedDepartment("a", "Alpha", "甲", ("Shared",)),
             taxonomy.SeedDepartment("b", "Beta", "乙", ("shared",)))
    with pytest.raises(ValueError, match="'shared' is a synonym of both a and b"):
        taxonomy.check_seed(clash)

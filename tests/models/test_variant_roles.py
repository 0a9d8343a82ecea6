"""Twins in the config: every LLM-derived variant names its no-LLM twin, a run trains it, a twin that reads LLM
tables or does not exist is refused, and LLM_TABLES is what augment's registry generates."""
import pytest
from pydantic import ValidationError

from configs import RunConfig, TrainConfig
from configs.train_config import DEFAULT_VARIANTS, LLM_TABLES

pytestmark = pytest.mark.timeout(60)


def test_every_built_in_llm_variant_has_a_no_llm_twin():
    tc = TrainConfig(variants=tuple(DEFAULT_VARIANTS))
    for name, v in DEFAULT_VARIANTS.items():
        if tc.llm_derived(name):
            assert v.twin is not None and not tc.llm_derived(v.twin), name
            # the same treatment: the twin's groups are the LLM variant's with raw-text groups in place of LLM ones
            assert bool(v.adaptor_groups) == bool(DEFAULT_VARIANTS[v.twin].adaptor_groups), name
        else:
            assert v.twin is None, name


def test_a_run_trains_the_twins_of_its_llm_variants():
    tc = TrainConfig(variants=("base", "llm_taste", "llm_kar_taste", "raw_text_taste"))
    assert tc.run_variants() == ("base", "llm_taste", "llm_kar_taste", "raw_text_taste", "raw_kar_taste")


@pytest.mark.parametrize("twin, match", [("nope", "twin: unknown variant 'nope'"),
                                         ("llm_item", "twin: 'llm_item' reads LLM tables")])
def test_a_bad_twin_is_refused(twin, match):
    with pytest.raises(ValidationError, match=match):
        TrainConfig(variants=("mine",), variant_defs={"mine": {"groups": ["item_knowledge_emb"], "twin": twin}})


def test_user_text_off_refuses_variants_that_read_it():
    with pytest.raises(ValidationError, match=r"\['llm', 'llm_kar'\] read user_profile_emb"):
        RunConfig.model_validate({"generation": {"user_text": False}})
    cfg = RunConfig.model_validate({"generation": {"user_text": False},
                                    "train": {"variants": ["base", "llm_item_taste", "llm_raw_taste"]}})
    assert "user_profile_emb" not in {t for v in cfg.train.run_variants() for t in cfg.train.llm_tables_read(v)}


def test_llm_tables_are_what_the_registry_generates():
    from augment.kinds import generated_kinds

    made = {k.emb_table for k in generated_kinds() if k.emb_table} | {k.feature_table for k in generated_kinds()
                                                                     if k.feature_table}
    assert made <= LLM_TABLES and LLM_TABLES - made == {"item_knowledge_emb_bt"}  # + the behaviour-tuned copy

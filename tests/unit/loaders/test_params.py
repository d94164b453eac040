import pytest

from loaders.fields import SettingError, build, describe
from loaders.llamacpp import LlamaCppOptions
from loaders.params import GenerationParams


def test_defaults_are_valid_and_follow_llama_cpp():
    p = GenerationParams()
    assert (p.temperature, p.top_k, p.top_p, p.min_p, p.repetition_penalty_range) == (0.8, 40, 0.95, 0.05, 64)


@pytest.mark.parametrize("field,value,message", [
    ("temperature", -0.5, "temperature must be at least 0 (got -0.5)"),
    ("top_p", 1.5, "top_p must be at most 1 (got 1.5)"),
    ("repetition_penalty", 0.0, "repetition_penalty must be greater than 0"),
    ("mirostat_mode", 3, "mirostat_mode must be one of 0, 1, 2 (got 3)"),
    ("max_new_tokens", 0, "max_new_tokens must be at least 1 (got 0)"),
    ("seed", -2, "seed must be at least -1 (got -2)"),
])
def test_out_of_range_values_get_one_line_messages(field, value, message):
    with pytest.raises(SettingError) as e:
        GenerationParams.from_mapping({field: value})
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_direct_construction_is_validated_too():
    with pytest.raises(SettingError, match="temperature"):
        GenerationParams(temperature=-1.0)


def test_wrong_types_and_unknown_names_are_refused():
    with pytest.raises(SettingError, match="top_k must be a whole number"):
        GenerationParams.from_mapping({"top_k": 2.5})
    with pytest.raises(SettingError, match="temperature must be a number"):
        GenerationParams.from_mapping({"temperature": "hot"})
    with pytest.raises(SettingError, match="unknown setting 'temprature'"):
        GenerationParams.from_mapping({"temprature": 0.5})
    with pytest.raises(SettingError, match="must be a number"):
        GenerationParams.from_mapping({"temperature": float("nan")})


def test_strings_from_a_command_line_are_coerced():
    p = GenerationParams.from_mapping({"temperature": "0.2", "top_k": "10", "ignore_eos": "true"})
    assert (p.temperature, p.top_k, p.ignore_eos) == (0.2, 10, True)


def test_stop_strings():
    assert GenerationParams.from_mapping({"stop": ["\nUser:", "###"]}).stop == ("\nUser:", "###")
    assert GenerationParams.from_mapping({"stop": "END"}).stop == ("END",)
    with pytest.raises(SettingError, match="stop strings must not be empty"):
        GenerationParams(stop=("",))


def test_every_field_is_described_for_the_ui():
    specs = describe(GenerationParams)
    names = {s.name for s in specs}
    for expected in ("temperature", "top_p", "top_k", "min_p", "typical_p", "repetition_penalty",
                     "repetition_penalty_range", "presence_penalty", "frequency_penalty",
                     "mirostat_mode", "mirostat_tau", "mirostat_eta", "seed", "max_new_tokens",
                     "stop", "xtc_probability", "dry_multiplier", "grammar"):
        assert expected in names
    assert all(s.help for s in specs)


def test_loader_options_validate_the_same_way():
    with pytest.raises(SettingError, match="n_ctx must be at least 0 \\(got -5\\)"):
        build(LlamaCppOptions, {"n_ctx": -5})
    with pytest.raises(SettingError, match="prompt_cache must be one of"):
        build(LlamaCppOptions, {"prompt_cache": "yes"})

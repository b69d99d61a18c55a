import pytest

from pollinate.config._overrides import Override, parse_overrides, typed_value
from pollinate.errors import ConfigError


@pytest.mark.parametrize(
    ("text", "key", "value"),
    [
        ("lr=0.1", "lr", 0.1),
        ("rounds=3", "rounds", 3),
        ("flag=true", "flag", True),
        ('name="a b"', "name", "a b"),
        ("name='a b'", "name", "a b"),
        ("data-dir=/tmp/mnist", "data-dir", "/tmp/mnist"),
        ("expr=a=b", "expr", "a=b"),
        ("empty=", "empty", ""),
        ("big=1_000", "big", 1000),
        ("when=2024-01-01", "when", "2024-01-01"),
    ],
)
def test_values_are_read_as_toml_else_kept_as_text(text, key, value):
    (override,) = parse_overrides([text], "--run-config")
    assert override.key == key
    assert override.value == value
    assert type(override.value) is type(value)


def test_pairs_split_like_a_shell_line_across_options_in_order():
    overrides = parse_overrides(["a=1 name='x y'  b=2", "a=3"], "--run-config")
    assert [(o.key, o.value) for o in overrides] == [("a", 1), ("name", "x y"), ("b", 2), ("a", 3)]


@pytest.mark.parametrize("token", ["learning-rate", "=3"])
def test_a_token_without_key_and_equals_is_a_clear_error(token):
    with pytest.raises(ConfigError, match=rf"--run-config: '{token}' is not key=value"):
        parse_overrides([f"a=1 {token}"], "--run-config")


def test_an_unbalanced_quote_is_a_clear_error():
    with pytest.raises(ConfigError, match=r"--federation-config: cannot split .*No closing"):
        parse_overrides(["name='a b"], "--federation-config")


def _typed(text: str, expected: type):
    (override,) = parse_overrides([f"k={text}"], "--run-config")
    return typed_value(override, expected, "'k'")


@pytest.mark.parametrize(
    ("text", "expected", "value"),
    [
        ("2", float, 2.0),
        (".5", float, 0.5),
        ("1e-3", float, 0.001),
        ("7", int, 7),
        ("True", bool, True),
        ("false", bool, False),
        ("123", str, "123"),
        ("true", str, "true"),
        ("/a/b", str, "/a/b"),
    ],
)
def test_values_take_the_type_they_replace(text, expected, value):
    result = _typed(text, expected)
    assert result == value
    assert type(result) is expected


@pytest.mark.parametrize(
    ("text", "expected", "phrase"),
    [
        ("abc", int, "an int"),
        ("2.5", int, "an int"),
        ("true", int, "an int"),
        ("fast", float, "a float"),
        ("1", bool, r"a bool \(true or false\)"),
    ],
)
def test_a_value_of_the_wrong_type_names_key_and_type(text, expected, phrase):
    with pytest.raises(ConfigError, match=f"'k' must be {phrase}, got '{text}'"):
        _typed(text, expected)


def test_typed_value_uses_the_text_as_given_for_strings():
    override = Override("k", "0.10", 0.1)
    assert typed_value(override, str, "'k'") == "0.10"

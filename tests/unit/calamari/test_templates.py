"""Octostache templates, feature by feature, from the language's specification."""

from __future__ import annotations

import base64
import datetime
import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.calamari.templates import (
    RecursiveDefinitionError,
    TemplateError,
    evaluate,
    evaluate_with_errors,
)

ACTIONS = {"Octopus.Action[Package A].Name": "a1", "Octopus.Action[Package B].Name": "b1"}


def case(template: str, expected: str | None, **variables: str | None) -> object:
    return pytest.param(template, variables, expected, id=template)


def check(template: str, variables: dict[str, str | None], expected: str | None) -> None:
    assert evaluate(template, variables) == expected


# -- substitution, escaping, echoes ---------------------------------------------


@pytest.mark.parametrize(
    ("template", "variables", "expected"),
    [
        case("Hello #{Name}!", "Hello World!", Name="World"),
        case("#{ Name }", "World", Name="World"),
        case("#{name}", "World", Name="World"),  # names are case-insensitive
        case("#{Foo Bar Jazz}", "spaced", **{"Foo Bar Jazz": "spaced"}),
        case("no tokens at all", "no tokens at all"),
        case("#{Missing}", "#{Missing}"),
        case("#{ Missing }", "#{Missing}"),  # echoes are re-rendered, not copied
        case("#{Missing | ToUpper}", "#{Missing | ToUpper}"),
        case("#{}", "#{}"),
        case("##{Foo}", "#{Foo}", Foo="x"),
        case("###{Foo}", "#x", Foo="x"),
        case("# ## ###", "# ## ###"),
        case("###### hello", "###### hello"),
        case("#{/foo}", "#{/foo}"),
        case("#{Empty}|#{Null}", "|", Empty="", Null=None),
        case("#{Foo}", "Baz", Foo="#{Bar}", Bar="Baz"),  # values are templates too
        case("#{Foo}", "QmF6", Foo="#{Bar | ToBase64}", Bar="Baz"),
    ],
)
def test_substitution(template: str, variables: dict[str, str], expected: str) -> None:
    check(template, variables, expected)


def test_missing_tokens_are_reported_and_parse_errors_return_the_input() -> None:
    result = evaluate_with_errors("#{A} #{B} #{A} #{C}", {"C": "c"})
    assert result.text == "#{A} #{B} #{A} c"
    assert result.error == "The following tokens were unable to be evaluated: '#{A}', '#{B}'"
    broken = evaluate_with_errors("x #{Foo", {"Foo": "y"})
    assert (broken.text, broken.error is not None) == ("x #{Foo", True)


def test_lenient_evaluation_keeps_what_does_not_parse_and_substitutes_the_rest() -> None:
    template = "a #{Foo b #{Name} #{if x} c #{Name | ToUpper}"
    assert evaluate(template, {"Name": "n"}, lenient=True) == "a #{Foo b n #{if x} c N"
    assert evaluate(template, {"Name": "n"}) == template


# -- paths, indexes, JSON ----------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "variables", "expected"),
    [
        case("#{Octopus.Action[Package B].Name}", "b1", **ACTIONS),
        case("#{octopus.action[package b].name}", "b1", **ACTIONS),
        case("#{Octopus.Action[#{Which}].Name}", "a1", Which="Package A", **ACTIONS),
        case("#{Octopus.Action[#{Nope}].Name}", "#{Octopus.Action[#{Nope}].Name}", **ACTIONS),
        case("#{Octopus.Action[*].Name}", "a1", **ACTIONS),
        case("#{Octopus.Action[Package A]}", "Package A", **ACTIONS),  # an index is its own value
        case("#{Step[]}", "empty index", **{"Step[]": "empty index"}),
        case(
            "#{Package[containers[0].container].Registry}",
            "r",
            **{"Package[containers[0].container].Registry": "r"},
        ),
        case("#{Test.Hello}", "world", Test='{"Hello": "world", "N": 12}'),
        case("#{Test[Hello]} #{Test.N}", "world 12", Test='{"Hello": "world", "N": 12}'),
        case("#{Test.Missing}|", "|", Test='{"Hello": "world"}'),
        case(
            "#{J.a[1].b} #{J.a[0]} #{J.a[9]}|#{J.a}",
            'x 1 |[1,{"b":"x"}]',
            J='{"a": [1, {"b": "x"}]}',
        ),
        case("#{J[Hello][World][Foo][Bar]}", "deep", J='{Hello: {World: {Foo: {Bar: "deep"}}}}'),
        case("#{J.single}", "quotes", J="{'single': 'quotes'}"),
        case("#{J.Bar}", "11", J='{#{Prop}: "#{Val}"}', Prop="Bar", Val="11"),
        case("#{J.Foo}", '{"Bar":"11"}', J='{"Foo": {"Bar": "11"}}'),
        case("#{J.Nothing}", "", J='{"Nothing": null}'),
        case("#{Test.Name}", "12", Test='{Name: "#{Test.Value}", Value: 12}'),
        case("#{Test.Hello}", "explicit", Test='{"Hello": "json"}', **{"Test.Hello": "explicit"}),
        case("#{Bad.Prop}", "#{Bad.Prop}", Bad="{not json"),
    ],
)
def test_paths_indexes_and_json(template: str, variables: dict[str, str], expected: str) -> None:
    check(template, variables, expected)


def test_a_self_referencing_variable_is_a_typed_error_naming_the_loop() -> None:
    variables = {"Foo": "#{Fox}", "Fox": "#{Fax}", "Fax": "#{Fix}", "Fix": "#{Foo}"}
    with pytest.raises(RecursiveDefinitionError) as raised:
        evaluate("#{Foo}", variables)
    assert str(raised.value) == (
        'An attempt to parse the variable symbol "Foo" appears to have resulted in a self '
        "referencing loop (Foo -> Fox -> Fax -> Fix -> Foo). Ensure that recursive loops do "
        "not exist in the variable values."
    )
    assert isinstance(raised.value, TemplateError)
    # referring to itself only through an index that cannot be resolved is just missing
    assert evaluate("#{MY_VAR}", {"MY_VAR": "#{MY_VAR[#{nope}]}"}) == "#{MY_VAR[#{nope}]}"


# -- conditionals ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "variables", "expected"),
    [
        case("#{if On}yes#{/if}", "yes", On="true"),
        case("#{if On}yes#{else}no#{/if}", "no", On="False"),
        case("#{if On}yes#{else}no#{/if}", "no", On=" NO "),
        case("#{if On}yes#{else}no#{/if}", "no", On="0"),
        case("#{if On}yes#{else}no#{/if}", "yes", On=" "),
        case("#{if Missing}yes#{else}no#{/if}", "no"),
        case("#{unless On}off#{/unless}", "off", On=""),
        case("#{unless On}off#{else}on#{/unless}", "on", On="1"),
        case("#{  IF On}case-insensitive keyword#{/if}", "case-insensitive keyword", On="1"),
        case('#{if Env == "Prod"}p#{/if}', "p", Env="Prod"),
        case('#{if Env == "prod"}p#{else}x#{/if}', "x", Env="Prod"),  # ordinal comparison
        case('#{if Env != "Prod"}np#{else}p#{/if}', "np", Env="Test"),
        case('#{if "Prod" == Env}p#{/if}', "p", Env="Prod"),
        case("#{if A == B}same#{/if}", "same", A="x", B="x"),
        case("#{if Nope == AlsoNope}both missing#{/if}", "both missing"),
        case('#{if Env | ToUpper == "PROD"}up#{/if}', "up", Env="prod"),
        case('#{if Env == \\"Prod\\"}escaped quotes#{/if}', "escaped quotes", Env="Prod"),
        case(
            '#{if N == "1"}one#{elseif N == "2"}two#{elseif N == "3"}three#{else}many#{/if}',
            "three",
            N="3",
        ),
        case('#{if N == "1"}one#{elseif N == "2"}two#{else}many#{/if}', "many", N="9"),
        case("#{if A}#{if B}both#{else}a only#{/if}#{/if}", "a only", A="1", B="0"),
        case('#{if X | Bogus == "a"}y#{/if}', '#{if X | Bogus == "a"}y#{/if}', X="a"),
    ],
)
def test_conditionals(template: str, variables: dict[str, str], expected: str) -> None:
    check(template, variables, expected)


def test_elseif_belongs_to_if_only() -> None:
    template = "#{unless A}x#{elseif B}y#{/unless}"
    assert evaluate_with_errors(template, {}).error is not None


# -- iteration -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "variables", "expected"),
    [
        case(
            "#{each a in Octopus.Action}[#{a}=#{a.Name}]#{/each}",
            "[Package A=a1][Package B=b1]",
            **ACTIONS,
        ),
        case(
            "#{each a in Octopus.Action}#{Octopus.Template.Each.Index}"
            "#{Octopus.Template.Each.First}#{Octopus.Template.Each.Last};#{/each}",
            "0TrueFalse;1FalseTrue;",
            **ACTIONS,
        ),
        case("#{each x in List}<#{x}>#{/each}", "<a>< b><c>", List="a, b,c"),
        case("#{each x in Empty}<#{x}>#{/each}", "<>", Empty=""),
        case("#{each x in Missing}<#{x}>#{/each}", ""),
        case("#{each x in J}#{x.Name};#{/each}", "a;b;", J='[{"Name": "a"}, {"Name": "b"}]'),
        case(
            "#{each x in J}#{x}=#{x.Key}:#{x.Value};#{/each}", "p=p:1;q=q:2;", J='{"p": 1, "q": 2}'
        ),
        case("#{each a in Octopus.Action}#{a.Size}#{/each}", "#{a.Size}#{a.Size}", **ACTIONS),
        case("#{each a in Octopus.Action}#{Outer}#{/each}", "oo", Outer="o", **ACTIONS),
        case(
            "#{each s in Steps}#{each a in Octopus.Action}#{s}#{a.Name} #{/each}#{/each}",
            "1a1 1b1 2a1 2b1 ",
            Steps="1,2",
            **ACTIONS,
        ),
        case(
            "#{each a in Octopus.Action}#{Step[#{a}].Role};#{/each}",
            "web;db;",
            **ACTIONS,
            **{"Step[Package A].Role": "web", "Step[Package B].Role": "db"},
        ),
    ],
)
def test_iteration(template: str, variables: dict[str, str], expected: str) -> None:
    check(template, variables, expected)


# -- calc --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "variables", "expected"),
    [
        case("#{calc 2+3}", "5"),
        case("#{calc A*2 + 1}", "7", A="3"),
        case("#{calc (1+2)*-4}", "-12"),
        case("#{calc 3/2}", "1.5"),
        case("#{calc {B}-2}", "2", B="4"),
        case("#{calc B-2}", "#{B-2}", B="4"),  # `-` is part of a name unless braced
        case("#{calc {The/Var}-2}", "1", **{"The/Var": "3"}),
        case("#{calc C+2}", "#{C+2}"),
        case("#{calc A+2}", "#{A+2}", A="not a number"),
    ],
)
def test_calc(template: str, variables: dict[str, str], expected: str) -> None:
    check(template, variables, expected)


# -- filters ---------------------------------------------------------------------

V = {
    "Name": "World",
    "Mixed": "Hello World",
    "Html": "<a href=\"x\">'&'</a>",
    "Url": "https://u@example.com:8080/p/a?q=1#f",
}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("#{Name | ToUpper}", "WORLD"),
        ("#{Name|tolower}", "world"),
        ("#{Name | ToUpper | ToLower}", "world"),
        ("#{Name | ToBase64}", "V29ybGQ="),
        ("#{Name | ToBase64 unicode}", base64.b64encode("World".encode("utf-16-le")).decode()),
        ("#{Encoded | FromBase64}", "World"),
        ("#{Html | HtmlEscape}", "&lt;a href=&quot;x&quot;&gt;&apos;&amp;&apos;&lt;&#x2F;a&gt;"),
        ("#{Html | XmlEscape}", "&lt;a href=&quot;x&quot;&gt;&apos;&amp;&apos;&lt;/a&gt;"),
        ("#{Lines | JsonEscape}", 'a\\"b\\\\c\\r\\n\\td'),
        ("#{Quote | YamlSingleQuoteEscape}", "it''s\n\nfine"),
        ("#{Lines | YamlDoubleQuoteEscape}", 'a\\"b\\\\c\\r\\n\\td'),
        ("#{Accent | YamlDoubleQuoteEscape}", "caf\\u00e9"),
        ("#{Key | PropertiesKeyEscape}", "a\\ b\\:c\\=d"),
        ("#{Spaced | PropertiesValueEscape}", "\\ lead"),
        ("#{Mixed | UriEscape}", "Hello%20World"),
        ("#{Data | UriDataEscape}", "A%20b%3Ac%2Bd%2Fe"),
        ("#{Url | UriPart Host}", "example.com"),
        ("#{Url | UriPart Port}", "8080"),
        ("#{Url | UriPart Scheme}", "https"),
        ("#{Url | UriPart PathAndQuery}", "/p/a?q=1"),
        ("#{Url | UriPart Fragment}", "#f"),
        ("#{Url | UriPart UserInfo}", "u"),
        ("#{Url | UriPart IsDefaultPort}", "false"),
        ("#{Url | UriPart}", "[UriPart error: no argument given]"),
        ("#{Url | UriPart bar}", "[UriPart bar error: argument 'bar' not supported]"),
        ("#{Mixed | Replace o 0}", "Hell0 W0rld"),
        ('#{Mixed | Replace "(\\w+) (\\w+)" "$2 $1"}', "World Hello"),
        ("#{Mixed | Replace l}", "Heo Word"),
        ("#{Mixed | Substring 5}", "Hello"),
        ("#{Mixed | Substring 6 5}", "World"),
        ("#{Mixed | Substring 6 50}", "World"),
        ("#{Mixed | Substring 11 1}", ""),
        ("#{Mixed | Substring 12 1}", '#{Mixed | Substring "12" "1"}'),
        ("#{Mixed | Truncate 5}", "Hello..."),
        ('#{Mixed | Truncate 5 ""}', "Hello"),
        ("#{Mixed | Truncate 50}", "Hello World"),
        ("#{Padded | Trim}", "x"),
        ("#{Padded | Trim start}", "x  "),
        ("#{Padded | Trim end}", "  x"),
        ('#{Mixed | Match "^H.*d$"}', "true"),
        ("#{Mixed | StartsWith Hello}", "true"),
        ("#{Mixed | EndsWith hello}", "false"),
        ("#{Mixed | Contains #{Name}}", "true"),
        ('#{Name | Append "!" "?"}', "World!?"),
        ("#{Missing | Append x}", "x"),
        ('#{Name | Prepend Hello " "}', "Hello World"),
        ("#{Name | Append}", "#{Name | Append}"),
        ("#{Block | Indent}", "    a\n    b"),
        ("#{Block | Indent 2}", "  a\n  b"),
        ("#{Block | Indent /2}", "a\n  b"),
        ("#{Block | Indent //}", "//a\n//b"),
        ('#{Block | Indent ">" "-"}', ">a\n-b"),
        ("#{Empty | Indent}", ""),
        ("#{Name | Sha256}", hashlib.sha256(b"World").hexdigest()),
        ("#{Name | Md5 4}", hashlib.md5(b"World").hexdigest()[:8]),
        ("#{Name | Sha1 unicode}", hashlib.sha1("World".encode("utf-16-le")).hexdigest()),
        (
            "#{V | VersionMajor}.#{V | VersionMinor}.#{V | VersionPatch}.#{V | VersionRevision}",
            "1.2.3.4",
        ),
        (
            "#{V | VersionPreRelease}|#{V | VersionPreReleasePrefix}|"
            "#{V | VersionPreReleaseCounter}|#{V | VersionMetadata}",
            "branch.1|branch|1|meta",
        ),
        ("#{Latest | VersionMajor}#{Latest | VersionPreRelease}", "0latest"),
        ("#{Moment | AddHours 2}", "2030-05-22T17:05:00.0000000"),
        ('#{Moment | AddDays "1.5"}', "2030-05-24T03:05:00.0000000"),
        ('#{Moment | Format "yyyy-MM-dd HH:mm"}', "2030-05-22 15:05"),
        ("#{Number | Format N2}", "1,234.57"),
        ('#{Number | Format "0.0"}', "1234.6"),
        ("#{Number | Format Double F1}", "1234.6"),
        ('#{Name | ToBazooka "6"}', '#{Name | ToBazooka "6"}'),
        ("#{Name | Null}", "#{Name | Null}"),
    ],
)
def test_filters(template: str, expected: str) -> None:
    variables = {**V, "Encoded": "V29ybGQ=", "Lines": 'a"b\\c\r\n\td', "Quote": "it's\nfine",
                 "Accent": "café", "Key": "a b:c=d", "Spaced": " lead", "Data": "A b:c+d/e",
                 "Padded": "  x  ", "Block": "a\nb", "Empty": "", "Latest": "latest",
                 "V": "v1.2.3.4-branch.1+meta", "Moment": "2030-05-22T15:05:00",
                 "Number": "1234.5678"}  # fmt: skip
    check(template, variables, expected)


def test_a_null_filter_makes_the_whole_result_null() -> None:
    assert evaluate("a #{Name | null} b", {"Name": "x"}) is None


def test_now_dates_need_no_input() -> None:
    year = datetime.datetime.now(datetime.UTC).year
    assert evaluate("#{ | NowDateUtc yyyy}", {}) in (str(year), str(year + 1))
    assert evaluate("#{Name | NowDate}", {"Name": "x"}) == "#{Name | NowDate}"


def test_markdown() -> None:
    assert evaluate(
        "#{Notes | Markdown}", {"Notes": "# Title\n\nSome **bold** and *em*\n\n- a\n- b"}
    ) == (
        "<h1>Title</h1>\n<p>Some <strong>bold</strong> and <em>em</em></p>\n"
        "<ul>\n<li>a</li>\n<li>b</li>\n</ul>\n"
    )


# -- robustness ------------------------------------------------------------------

TEMPLATE_PIECES = st.sampled_from(
    ["#{", "}", "##{", "#", "{", "|", " ", "if ", "each ", "calc ", "#{/if}", "#{else}", "#{/each}",
     "in", "==", '"', "\\\"", "[", "]", ".", "Name", "J", "x", "Filter", "ToUpper", "(", "-", "*",
     "#{elseif ", "unless ", "#{/unless}", "null", "0"]
)  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(st.lists(TEMPLATE_PIECES | st.text(max_size=3), max_size=25).map("".join), st.booleans())
def test_any_template_evaluates_or_fails_with_a_typed_error(template: str, lenient: bool) -> None:
    variables = {"Name": "n", "J": '{"a": [1]}', "x": "#{Name}", "List": "a,b"}
    try:
        result = evaluate(template, variables, lenient=lenient)
    except TemplateError:
        return
    assert result is None or isinstance(result, str)


@pytest.mark.parametrize(
    "template",
    [
        "#{if a}" * 3000 + "x" + "#{/if}" * 3000,
        "#{a | F " * 3000,
        "#{a[" * 3000,
        "#{calc " + "(" * 3000 + "1" + ")" * 3000 + "}",
        "#{calc " + "-" * 3000 + "1}",
    ],
    ids=["blocks", "options", "indexes", "parentheses", "signs"],
)
def test_deep_nesting_is_a_parse_error_not_a_crash(template: str) -> None:
    result = evaluate_with_errors(template, {"a": "1"})
    assert result.text == template
    assert result.error is not None
    assert "nested more than 64 levels deep" in result.error


def test_json_too_deep_to_read_is_not_json() -> None:
    deep = "[" * 100_000 + "]" * 100_000
    assert evaluate("#{J[0]}", {"J": deep}) == "#{J[0]}"
    assert evaluate("#{each x in J}<#{x}>#{/each}", {"J": deep}) == f"<{deep}>"

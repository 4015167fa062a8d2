"""The HTML page of ``/api/2.0/hokusai/docs``: Markdown of the OpenAPI document rendered safely, and
the "Try it" form's Authorization field, without a server (the served page: test_rest_api.py)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from mlflow_hokusai_plugin.server.openapi import (
    _JS,
    docs_html,
    markdown_html,
    markdown_inline,
    openapi_document,
)


def section(page: str, operation_id: str) -> str:
    found = re.search(rf'<section class="op" id="op-{operation_id}">.*?</section>', page, re.S)
    assert found, operation_id
    return found.group(0)


def test_code_spans_bold_links_and_paragraphs_are_rendered():
    assert markdown_inline("runs offline with `hokusai attestation verify`.") == (
        "runs offline with <code>hokusai attestation verify</code>."
    )
    # Docstrings' double backticks are Markdown code spans too, and may hold a backtick.
    assert markdown_inline("only ``dsse`` is signed") == "only <code>dsse</code> is signed"
    assert markdown_inline("`` `x` ``") == "<code>`x`</code>"
    assert markdown_inline("**bold `code`**") == "<strong>bold <code>code</code></strong>"
    assert markdown_inline("see [the docs](/api/2.0/hokusai/docs#op-x)") == (
        'see <a href="/api/2.0/hokusai/docs#op-x">the docs</a>'
    )
    assert markdown_html("one\nline\n\n  two `x`  \n\n") == "<p>one\nline</p><p>two <code>x</code></p>"
    # Identifiers with underscores and lone markers stay as they are.
    assert markdown_inline("REQUEST_LIMIT_EXCEEDED, a ` and ** alone") == (
        "REQUEST_LIMIT_EXCEEDED, a ` and ** alone"
    )


def test_nothing_of_the_document_becomes_markup():
    assert markdown_inline("<script>alert(1)</script> & `<b>`") == (
        "&lt;script&gt;alert(1)&lt;/script&gt; &amp; <code>&lt;b&gt;</code>"
    )
    for url in ("javascript:alert(1)", "JavaScript:alert(1)", "data:text/html,x", "vbscript:x"):
        assert "<a" not in markdown_inline(f"[click]({url})"), url
    rendered = markdown_inline('[x" onmouseover="alert(1)](/p"q) **<i>**')
    assert '"' not in rendered.replace('href="/p&quot;q"', "")
    assert "<i>" not in rendered
    # A NUL in the text cannot forge a code-span placeholder.
    assert markdown_inline("\x000\x00 `a`") == "0 <code>a</code>"


def test_the_page_renders_the_descriptions_markdown_and_shows_no_backticks():
    document = openapi_document()
    verify = document["paths"]["/api/2.0/hokusai/attestations/verify"]["post"]
    assert "`hokusai attestation verify`" in verify["description"]  # the document keeps its Markdown
    page = docs_html(document)
    html = section(page, "verifyAttestation")
    assert "<code>hokusai attestation verify</code>" in html
    assert "`" not in html
    intro = page.split("<h2>Authentication</h2>", 1)[0]
    assert "<code>mlflow server --app-name hokusai</code>" in intro and "`" not in intro.split("<main>")[1]


def test_a_description_with_markup_in_it_is_escaped_on_the_page():
    document = openapi_document()
    verify = document["paths"]["/api/2.0/hokusai/attestations/verify"]["post"]
    verify["summary"] = "**Check** <img src=x onerror=alert(1)>"
    verify["description"] = "Run `<script>` [here](javascript:alert(1))."
    html = section(docs_html(document), "verifyAttestation")
    assert "<strong>Check</strong> &lt;img src=x onerror=alert(1)&gt;" in html
    assert "<code>&lt;script&gt;</code>" in html
    # A link to javascript: stays text.
    assert "[here](javascript:alert(1))" in html and 'href="javascript' not in html.lower()


def test_the_key_field_is_labelled_and_a_bare_key_is_sent_as_a_bearer_token():
    page = docs_html()
    assert 'id="hk-auth" placeholder="hk_... (Bearer is added)"' in page
    assert "sent as <code>Authorization: Bearer</code>" in page
    assert "hkAuthorization(document.getElementById('hk-auth').value)" in _JS


@pytest.mark.skipif(shutil.which("node") is None, reason="needs Node.js to run the page's script")
def test_the_pages_script_adds_bearer_to_a_bare_key_only():
    # The page's own script, with no DOM: hkAuthorization is what the form sends as Authorization.
    script = (
        "var document={querySelectorAll:function(){return [];}};\n"
        + _JS
        + "\nconsole.log(JSON.stringify(['hk_live_abc', '  hk_live_abc \\n', 'Bearer hk_live_abc',"
        " 'bearer  hk_x', 'Basic dXNlcjpwdw==', '', '   '].map(hkAuthorization)));"
    )
    out = subprocess.run(["node", "-e", script], capture_output=True, text=True, timeout=30, check=True)
    assert json.loads(out.stdout) == [
        "Bearer hk_live_abc",
        "Bearer hk_live_abc",
        "Bearer hk_live_abc",
        "bearer  hk_x",
        "Basic dXNlcjpwdw==",
        "",
        "",
    ]

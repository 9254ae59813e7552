"""A self-contained HTML template for ``dvc plots show``: the loss curves render offline.

DVC's default page loads vega, vega-lite and vega-embed from a CDN, so on an air-gapped
workstation (or any offline browser) the CSV plots, the loss curves, are blank and only
the PNG charts show. This template inlines the three libraries instead, taken from the
PyPI package ``vl-convert-python`` (its ``javascript_bundle()`` returns them as one script,
no network). It also makes vega-embed draw SVG, so what was drawn is visible in the DOM.

``make setup`` writes it to ``.dvc/plots_template.html``, which ``.dvc/config`` names
(``plots.html_template``), so a plain ``dvc plots show`` uses it. The file is generated,
not committed: the libraries are third-party code.
"""

from __future__ import annotations

from pathlib import Path

from tuneline.io.atomic import write_text_atomic

DEFAULT_PATH = Path(".dvc") / "plots_template.html"
VEGA_LITE = "5.21"  # the schema version of DVC's plot specs

PAGE = """<!DOCTYPE html>
<html>
<head>
    {refresh_tag}
    <meta charset="utf-8">
    <title>DVC Plot (tuneline, offline)</title>
    <script type="text/javascript">
__BUNDLE__
    </script>
    <script type="text/javascript">
      (function () {
        const embed = window.vegaEmbed;  /* SVG: the drawn marks are in the DOM, and no actions menu */
        window.vegaEmbed = (el, spec, opt) => embed(el, spec, Object.assign({renderer: "svg", actions: false}, opt));
      })();
    </script>
    <style>
        table {
            border-spacing: 15px;
        }
    </style>
</head>
<body>
    {plot_divs}
</body>
</html>
"""


def template() -> str:
    """The page with vega, vega-lite and vega-embed inlined (about 0.9 MB)."""
    import vl_convert

    bundle = vl_convert.javascript_bundle(vl_version=VEGA_LITE)
    # inline, the bundle must not close its own <script> element, and must not carry DVC's placeholders
    bundle = bundle.replace("</script", "<\\/script")
    for placeholder in ("{plot_divs}", "{scripts}", "{refresh_tag}"):
        if placeholder in bundle:
            raise ValueError(f"the vega bundle contains DVC's placeholder {placeholder}")
    return PAGE.replace("__BUNDLE__", bundle)


def write_template(path: str | Path = DEFAULT_PATH) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, template())
    return path

"""The web catalog: server-rendered pages over the registry's services and selectors.

`urls.py` routes; `views.py` parses requests, calls the registry and renders templates;
`forms.py` validates input; `queries.py` holds the catalog's bounded read queries (facets, page
extras); `display.py` the strings list pages show; `compose.py` the submit-time checks of a
composition; `modelcard.py` Markdown rendering and sanitizing; `svg.py` the lineage graph;
`templatetags/formatting.py` sizes and ages by the rule `ahub` prints with. Score charts are drawn
in the browser by plotly.js, served from the hub (hub/static/hub/adapter-charts.js).
"""

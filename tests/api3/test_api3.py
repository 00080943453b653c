"""The shotgun_api3 drop-in, end to end: the real `shotgun_api3` client against the query-server's
`/api3/json`, every answer compared with the same call made directly against the simulated site.

Reads of cached data must be answered by the cache itself (checked through the query-server's
`api3_calls_total` counter), and everything else must be forwarded and come back unchanged.
"""

import datetime
import uuid

import pytest
import shotgun_api3

SHOT_FIELDS = ["code", "sg_status_list", "sg_sequence", "project", "sg_cut_in", "created_at", "updated_at",
               "assets", "sg_shot_type"]
DEEP_FIELDS = ["code", "sg_sequence.Sequence.code", "sg_sequence.Sequence.sg_status_list",
               "project.Project.name", "sg_sequence.Sequence.project.Project.name", "assets.Asset.code"]


def cached(delta, method="read"):
    """True when every `method` call in the counter delta was answered by the cache."""
    return delta.get((method, "cache"), 0) >= 1 and not delta.get((method, "site")) and not delta.get((method, "refused"))


def forwarded(delta, method):
    return delta.get((method, "site"), 0) >= 1 and not delta.get((method, "cache"))


# ---------------------------------------------------------------------------------------------
# info


def test_info_is_modern_and_names_the_cache(cache, site):
    info = cache.info()
    assert tuple(info["version"][:3]) >= (8, 0, 0)
    assert "shotgun_cache" in info and "Shot" in info["shotgun_cache"]["cached_types"]
    direct = site.info()
    assert "shotgun_cache" not in direct
    # Apart from the cache's own key, the site's info comes through.
    assert {k: v for k, v in info.items() if k != "shotgun_cache"} == direct
    # shotgun_api3 turns its modern paging on.
    assert cache.server_caps.ensure_paging_info_without_counts_support()


# ---------------------------------------------------------------------------------------------
# find / find_one


def statuses(site):
    rows = site.find("Shot", [], ["sg_status_list"])
    return sorted({r["sg_status_list"] for r in rows if r["sg_status_list"]})


FILTER_CASES = [
    ("everything", lambda s: []),
    ("status is", lambda s: [["sg_status_list", "is", s[0]]]),
    ("status in", lambda s: [["sg_status_list", "in", s[:2]]]),
    ("status is_not (nulls included)", lambda s: [["sg_status_list", "is_not", s[0]]]),
    ("code contains, case-insensitive", lambda s: [["code", "contains", "0"]]),
    ("code starts_with", lambda s: [["code", "starts_with", "S"]]),
    ("deep link filter", lambda s: [["sg_sequence.Sequence.code", "contains", "1"]]),
    ("link is null", lambda s: [["sg_sequence", "is", None]]),
    ("any group", lambda s: [{"filter_operator": "any", "filters": [
        ["sg_status_list", "is", s[0]], ["sg_cut_in", "greater_than", 1010]]}]),
    ("number between", lambda s: [["sg_cut_in", "between", [1001, 1050]]]),
    ("date_time greater_than", lambda s: [["created_at", "greater_than", datetime.datetime(2025, 6, 1, tzinfo=shotgun_api3.sg_timezone.utc)]]),
    ("multi_entity type_is", lambda s: [["assets", "type_is", "Asset"]]),
    ("id in", lambda s: [["id", "in", [1, 2, 3, 5, 8, 13]]]),
]


@pytest.mark.parametrize("name,make", FILTER_CASES, ids=[c[0] for c in FILTER_CASES])
def test_find_equals_the_site(cache, site, answered_by, name, make):
    filters = make(statuses(site))
    order = [{"field_name": "code", "direction": "asc"}, {"field_name": "id", "direction": "desc"}]
    expected = site.find("Shot", filters, SHOT_FIELDS, order=order)
    got, delta = answered_by(cache.find, "Shot", filters, SHOT_FIELDS, order=order)
    assert got == expected
    assert cached(delta), delta


def test_find_one_equals_the_site(cache, site, answered_by):
    s = statuses(site)
    for filters in ([["sg_status_list", "is", s[-1]]], [["code", "is", "no such shot"]], []):
        expected = site.find_one("Shot", filters, SHOT_FIELDS, order=[{"field_name": "code", "direction": "desc"}])
        got, delta = answered_by(cache.find_one, "Shot", filters, SHOT_FIELDS,
                                 order=[{"field_name": "code", "direction": "desc"}])
        assert got == expected
        assert cached(delta), delta
    assert cache.find_one("Shot", [["code", "is", "no such shot"]]) is None


def test_paging_over_thousands_of_rows(cache, site, answered_by):
    fields = ["content", "sg_status_list", "entity", "step", "due_date", "task_assignees"]
    expected = site.find("Task", [], fields)
    assert len(expected) > 2000, "the simulated site should have thousands of Tasks"
    got, delta = answered_by(cache.find, "Task", [], fields)
    assert got == expected
    pages = -(-len(expected) // 500)
    assert delta.get(("read", "cache")) == pages, delta
    # A limit above one page, and an explicit page.
    assert cache.find("Task", [], fields, limit=1234) == site.find("Task", [], fields, limit=1234)
    assert cache.find("Task", [], fields, limit=100, page=3) == site.find("Task", [], fields, limit=100, page=3)
    order = [{"field_name": "due_date", "direction": "desc"}]
    assert cache.find("Task", [], fields, order=order, limit=777) == site.find("Task", [], fields, order=order, limit=777)


def test_deep_link_fields(cache, site, answered_by):
    # Deep reads through multi_entity links are absent from the records, as on the site.
    expected = site.find("Shot", [], DEEP_FIELDS, order=[{"field_name": "sg_sequence.Sequence.code", "direction": "asc"}])
    got, delta = answered_by(cache.find, "Shot", [], DEEP_FIELDS,
                             order=[{"field_name": "sg_sequence.Sequence.code", "direction": "asc"}])
    assert got == expected
    assert cached(delta), delta
    assert all("assets.Asset.code" not in r for r in got)
    tasks = ["content", "entity.Shot.code", "entity.Shot.sg_sequence.Sequence.code", "step.Step.code"]
    assert cache.find("Task", [["entity", "type_is", "Shot"]], tasks, limit=300) == \
        site.find("Task", [["entity", "type_is", "Shot"]], tasks, limit=300)


def test_retired_only(cache, site, answered_by):
    expected = site.find("Task", [], ["content"], retired_only=True)
    got, delta = answered_by(cache.find, "Task", [], ["content"], retired_only=True)
    assert got == expected
    assert len(got) > 0
    assert cached(delta), delta


# ---------------------------------------------------------------------------------------------
# summarize


SUMMARIES = [
    ([{"field": "id", "type": "count"}], None),
    ([{"field": "id", "type": "record_count"}, {"field": "sg_cut_in", "type": "sum"},
      {"field": "sg_cut_out", "type": "maximum"}, {"field": "sg_cut_duration", "type": "average"},
      {"field": "created_at", "type": "earliest"}, {"field": "updated_at", "type": "latest"}], None),
    ([{"field": "id", "type": "count"}, {"field": "sg_cut_in", "type": "minimum"}],
     [{"field": "sg_status_list", "type": "exact", "direction": "asc"}]),
    ([{"field": "id", "type": "count"}],
     [{"field": "sg_sequence", "type": "exact", "direction": "desc"},
      {"field": "sg_status_list", "type": "exact", "direction": "asc"}]),
]


@pytest.mark.parametrize("summary_fields,grouping", SUMMARIES)
def test_summarize_equals_the_site(cache, site, answered_by, summary_fields, grouping):
    filters = [["sg_cut_in", "greater_than", 0]]
    expected = site.summarize("Shot", filters, summary_fields, grouping=grouping)
    got, delta = answered_by(cache.summarize, "Shot", filters, summary_fields, grouping=grouping)
    assert got == expected
    assert cached(delta, "summarize"), delta


def test_summarize_checkbox_on_tasks(cache, site, answered_by):
    fields = [{"field": "milestone", "type": "checked"}, {"field": "pinned", "type": "unchecked"},
              {"field": "due_date", "type": "latest"}]
    grouping = [{"field": "step", "type": "exact", "direction": "asc"}]
    got, delta = answered_by(cache.summarize, "Task", [], fields, grouping=grouping)
    assert got == site.summarize("Task", [], fields, grouping=grouping)
    assert cached(delta, "summarize"), delta


def fault_of(fn, *args, **kwargs):
    """The message of the Fault a call raises (None when it raises none)."""
    try:
        fn(*args, **kwargs)
    except shotgun_api3.Fault as e:
        return str(e)
    return None


def test_summarize_the_cache_cannot_answer_is_forwarded(cache, site, answered_by):
    # Date buckets are not answered from the cache (their group names are unverified): forwarded, and
    # the site's answer (here: the simulator's own fault) comes back unchanged.
    fields = [{"field": "id", "type": "count"}]
    grouping = [{"field": "created_at", "type": "month", "direction": "asc"}]
    direct = fault_of(site.summarize, "Shot", [], fields, grouping=grouping)
    assert direct is not None
    through, delta = answered_by(fault_of, cache.summarize, "Shot", [], fields, grouping=grouping)
    assert through == direct
    assert forwarded(delta, "summarize"), delta
    # A summary of an uncached field is forwarded too, and answered by the site.
    fields = [{"field": "description", "type": "count"}]
    got, delta = answered_by(cache.summarize, "Shot", [], fields)
    assert got == site.summarize("Shot", [], fields)
    assert forwarded(delta, "summarize"), delta


# ---------------------------------------------------------------------------------------------
# schema


def test_schema_calls_equal_the_site(cache, site, answered_by):
    for call, args in [("schema_read", ()), ("schema_entity_read", ()), ("schema_field_read", ("Shot",)),
                       ("schema_field_read", ("Shot", "sg_sequence")), ("schema_field_read", ("Task", "content"))]:
        expected = getattr(site, call)(*args)
        got, delta = answered_by(getattr(cache, call), *args)
        assert got == expected, call
        assert cached(delta, call), (call, delta)


# ---------------------------------------------------------------------------------------------
# writes: forwarded, then visible at once


def test_create_then_find_sees_the_write(cache, site, answered_by):
    seq = site.find_one("Sequence", [], ["code", "project"])
    code = "api3-" + uuid.uuid4().hex[:8]
    created, delta = answered_by(cache.create, "Shot",
                                 {"code": code, "sg_sequence": {"type": "Sequence", "id": seq["id"]},
                                  "project": seq["project"], "sg_cut_in": 1001},
                                 ["code", "sg_status_list"])
    assert forwarded(delta, "create"), delta
    assert created["code"] == code and created["type"] == "Shot"
    # Read at once through the cache: the cache answers, and already has the new Shot.
    got, delta = answered_by(cache.find_one, "Shot", [["code", "is", code]], SHOT_FIELDS)
    assert cached(delta), delta
    assert got is not None and got["id"] == created["id"]
    assert got == site.find_one("Shot", [["code", "is", code]], SHOT_FIELDS)

    # An update is visible at once too, and so is a delete, and a revive.
    updated, delta = answered_by(cache.update, "Shot", created["id"], {"sg_cut_in": 1017, "sg_status_list": "ip"})
    assert forwarded(delta, "update"), delta
    assert updated == site.find_one("Shot", [["id", "is", created["id"]]], ["sg_cut_in", "sg_status_list"])
    assert cache.find_one("Shot", [["id", "is", created["id"]]], ["sg_cut_in", "sg_status_list"]) == updated
    assert cache.delete("Shot", created["id"]) is True
    assert cache.find_one("Shot", [["id", "is", created["id"]]]) is None
    assert cache.find_one("Shot", [["id", "is", created["id"]]], retired_only=True) == {"type": "Shot", "id": created["id"]}
    assert cache.revive("Shot", created["id"]) is True
    assert cache.find_one("Shot", [["id", "is", created["id"]]], ["code"]) == {"type": "Shot", "id": created["id"], "code": code}


def test_batch_is_forwarded_and_visible(cache, site, answered_by):
    seq = site.find_one("Sequence", [], ["project"])
    code = "api3-batch-" + uuid.uuid4().hex[:6]
    reqs = [{"request_type": "create", "entity_type": "Shot",
             "data": {"code": code + "-a", "project": seq["project"]}, "return_fields": ["code"]},
            {"request_type": "create", "entity_type": "Shot",
             "data": {"code": code + "-b", "project": seq["project"]}}]
    results, delta = answered_by(cache.batch, reqs)
    assert forwarded(delta, "batch"), delta
    assert [r["type"] for r in results] == ["Shot", "Shot"]
    found = cache.find("Shot", [["code", "starts_with", code]], ["code"], order=[{"field_name": "code", "direction": "asc"}])
    assert [r["code"] for r in found] == [code + "-a", code + "-b"]
    more = [{"request_type": "update", "entity_type": "Shot", "entity_id": results[0]["id"], "data": {"sg_cut_in": 5}},
            {"request_type": "delete", "entity_type": "Shot", "entity_id": results[1]["id"]}]
    assert cache.batch(more)[1] is True
    assert cache.find("Shot", [["code", "starts_with", code]], ["code", "sg_cut_in"]) == \
        [{"type": "Shot", "id": results[0]["id"], "code": code + "-a", "sg_cut_in": 5}]


# ---------------------------------------------------------------------------------------------
# forwarded reads and errors


def test_uncached_types_fields_and_methods_are_forwarded_unchanged(cache, site, answered_by):
    cases = [
        ("find", ("Version", [], ["code", "entity"]), {"limit": 50}),
        ("find", ("Shot", [], ["code", "description"]), {"limit": 50}),
        ("find", ("Shot", [["description", "contains", "a"]], ["code"]), {}),
        ("find", ("Shot", [], ["code", "image"]), {"limit": 5}),
        ("find", ("Note", [], ["subject"]), {"limit": 20}),
    ]
    for method, args, kwargs in cases:
        got, delta = answered_by(getattr(cache, method), *args, **kwargs)
        expected = getattr(site, method)(*args, **kwargs)
        if "image" in args[2]:
            # Image URLs are signed per read: compare everything but the signature.
            strip = lambda rows: [{k: (v.split("?")[0] if k == "image" and v else v) for k, v in r.items()} for r in rows]  # noqa: E731
            assert strip(got) == strip(expected)
        else:
            assert got == expected, args
        assert forwarded(delta, "read"), (args, delta)
    # text_search (query_display_name_cache) is the site's.
    shot = site.find_one("Shot", [], ["code"])
    got, delta = answered_by(cache.text_search, shot["code"], {"Shot": []})
    assert got == site.text_search(shot["code"], {"Shot": []})
    assert any(m["id"] == shot["id"] for m in got["matches"])
    assert forwarded(delta, "query_display_name_cache"), delta
    # A per-project schema read is the site's.
    project = site.find_one("Project", [], ["name"])
    got, delta = answered_by(cache.schema_field_read, "Shot", "code", project_entity=project)
    assert got == site.schema_field_read("Shot", "code", project_entity=project)
    assert forwarded(delta, "schema_field_read"), delta


def test_errors_are_the_sites(cache, site, answered_by):
    for filters in ([["sg_no_such_field", "is", "x"]], [["code", "greater_than", 5]]):
        with pytest.raises(shotgun_api3.Fault) as direct:
            site.find("Shot", filters, ["code"])
        with pytest.raises(shotgun_api3.Fault) as through:
            cache.find("Shot", filters, ["code"])
        assert str(through.value) == str(direct.value)
    with pytest.raises(shotgun_api3.Fault) as direct:
        site.find("NoSuchType", [], ["code"])
    with pytest.raises(shotgun_api3.Fault) as through:
        cache.find("NoSuchType", [], ["code"])
    assert str(through.value) == str(direct.value)


def test_unknown_credentials_are_refused_as_the_site_does(cache):
    import os
    messages = []
    for url in (os.environ["API3_CACHE_URL"], os.environ["API3_SITE_URL"]):
        bad = shotgun_api3.Shotgun(url, os.environ["API3_SCRIPT"], "wrong-key", connect=False)
        with pytest.raises(shotgun_api3.AuthenticationFault) as e:
            bad.find("Shot", [], ["code"])
        messages.append(str(e.value))
    assert messages[0] == messages[1]
    assert "Can't authenticate script" in messages[0]


def test_include_archived_projects_false(cache, site, answered_by):
    # Archive one project (through the cache: forwarded, then visible at once), and compare.
    project = site.find_one("Project", [], ["name", "archived"], order=[{"field_name": "id", "direction": "asc"}])
    cache.update("Project", project["id"], {"archived": True})
    try:
        expected = site.find("Shot", [], ["code", "project"], include_archived_projects=False)
        got, delta = answered_by(cache.find, "Shot", [], ["code", "project"], include_archived_projects=False)
        assert got == expected
        assert cached(delta), delta
        assert all(r["project"] is None or r["project"]["id"] != project["id"] for r in got)
        assert len(got) < len(cache.find("Shot", [], ["code"]))
    finally:
        cache.update("Project", project["id"], {"archived": project["archived"]})


def _http(url, data=None, headers=None):
    import urllib.error
    import urllib.request
    req = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def _shape(body):
    """The JSON structure of a body (keys, recursively), or the body itself when it is not JSON."""
    import json

    def keys(v):
        if isinstance(v, dict):
            return {k: keys(x) for k, x in v.items()}
        if isinstance(v, list):
            return [keys(x) for x in v[:1]]
        return type(v).__name__

    try:
        return keys(json.loads(body))
    except ValueError:
        return body


def test_other_paths_pass_through_to_the_site():
    # Uploads, thumbnails and downloads are plain HTTP paths of the site; anything but /api3/json is
    # passed through. The REST login and a REST read show it (the simulator has no upload paths).
    import os
    import urllib.parse
    cache_url, site_url = os.environ["API3_CACHE_URL"], os.environ["API3_SITE_URL"]
    form = urllib.parse.urlencode({"grant_type": "client_credentials", "client_id": os.environ["API3_SCRIPT"],
                                   "client_secret": os.environ["API3_KEY"]}).encode()
    hdrs = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}
    c = _http(cache_url + "/api/v1/auth/access_token", form, hdrs)
    s = _http(site_url + "/api/v1/auth/access_token", form, hdrs)
    assert c[0] == s[0] == 200
    assert _shape(c[2]) == _shape(s[2])
    assert c[1].get("x-shotgun-cache") == "site"
    for path in ["/api/v1/entity/shots/1", "/upload/get_thumbnail_url?entity_type=Shot&entity_id=1"]:
        c, s = _http(cache_url + path), _http(site_url + path)
        assert c[0] == s[0], path
        assert _shape(c[2]) == _shape(s[2]), path

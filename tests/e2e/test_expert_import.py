"""The CSV import in a real browser against HQ as a process: a coordinator uploads a directory file and sees
every problem by row and column with nothing imported; a GBK file is refused as UTF-8 with a hint and read
when GBK is chosen; the experts then appear in the directory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.support import accounts
from tests.support.stack import Stack

pytestmark = pytest.mark.browser

DATA = Path(__file__).resolve().parents[1] / "data" / "experts"


@pytest.fixture
def stack() -> Iterator[Stack]:
    with Stack() as s:
        s.start_broker()
        s.start_hq()
        accounts.add_user(s.db_url, "coordinator", "coordinator", display_name="Coordinator Wu")
        yield s


def upload(page: Page, name: str, *, encoding: str = "utf-8") -> None:
    page.goto(page.url.split("/experts")[0] + "/experts/import")
    page.set_input_files("#import-form input[name=file]", str(DATA / name))
    page.select_option("#import-form select[name=encoding]", encoding)
    # Sent with fetch (the CSRF token in a header) and the answer put in the page's place: no navigation.
    with page.expect_response(lambda r: r.url.endswith("/experts/import") and r.request.method == "POST") as sent:
        page.click("#import-form button[type=submit]")
    assert sent.value.request.headers.get("x-csrf-token")
    expect(page.locator("#import-result")).to_be_attached()


def test_import_shows_every_problem_by_row_and_column_then_imports_a_gbk_file(page: Page, stack: Stack) -> None:
    accounts.login(page, stack.hq_url, "coordinator", next_path="/experts/import")
    upload(page, "directory_with_errors.csv")
    result = page.locator("#import-result")
    expect(result).to_have_class("import-result refused")
    expect(result.locator(".summary")).to_contain_text("Nothing was imported: 5 problems in the file")
    rows = page.locator("#import-errors tbody tr")
    expect(rows).to_have_count(5)
    cells = [[c.strip() for c in r.locator("td").all_inner_texts()][:3] for r in rows.all()]
    assert cells == [["3", "department", "Astrology"], ["4", "time_zone", "Asia/Beijing"],
                     ["4", "languages", "Klingon"], ["4", "daily_cap", "lots"],
                     ["5", "credential_expires", "30/06/2028"]]
    expect(rows.nth(0)).to_contain_text("a department name or synonym HQ knows")
    expect(page.locator('#import-errors tr[data-row="5"]')).to_contain_text("day-first or month-first")
    page.goto(stack.hq_url + "/experts")
    expect(page.locator("#count")).to_have_text("no expert matches")  # all or nothing: row 2 was good, not kept

    upload(page, "directory_gbk.csv")
    expect(result).to_have_class("import-result refused")
    expect(page.locator("#import-errors tbody tr")).to_have_count(1)
    expect(page.locator("#import-errors")).to_contain_text("reads as GBK")

    upload(page, "directory_gbk.csv", encoding="gbk")
    expect(result).to_have_class("import-result ok")
    expect(result.locator(".summary")).to_contain_text("Imported: 2 added, 0 updated")
    page.goto(stack.hq_url + "/experts?department=心脏内科")
    expect(page.locator("#experts tbody tr")).to_have_count(1)
    page.click("text=李伟")
    expect(page.locator("h1")).to_have_text("李伟")
    expect(page.locator("#credentials")).to_contain_text("执业医师证")
    expect(page.locator("#capability")).to_contain_text("Consultations done")

"""Short summary tables printed at the end of every command."""

from __future__ import annotations

import pandas as pd
from rich.console import Console
from rich.table import Table

console = Console()


def print_table(title: str, frame: pd.DataFrame, digits: int = 4) -> None:
    table = Table(title=title, title_justify="left")
    for column in frame.columns:
        table.add_column(str(column), justify="right" if pd.api.types.is_numeric_dtype(frame[column]) else "left")
    for row in frame.itertuples(index=False):
        table.add_row(*(f"{v:.{digits}f}" if isinstance(v, float) else str(v) for v in row))
    console.print(table)


def print_mapping(title: str, values: dict[str, object], digits: int = 4) -> None:
    print_table(title, pd.DataFrame({"": list(values), "value": [v for v in values.values()]}), digits)

"""Pure figure builders (Plotly), one module per area; tests call them directly."""

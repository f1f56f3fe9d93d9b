"""SemiREST Studio: the PySide6 desktop application (the only place Qt lives)."""

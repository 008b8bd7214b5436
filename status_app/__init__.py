"""The status page (Streamlit): `data` loads the state store read-only, `model` decides what to say, `app` renders."""

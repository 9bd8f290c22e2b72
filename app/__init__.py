"""The Streamlit app's shared pieces (no model math: everything shown comes from `nested`)."""

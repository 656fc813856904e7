"""The Streamlit dashboard (built in a later issue); it reads through flows' read APIs."""

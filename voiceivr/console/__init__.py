"""The admins' web console: sign-in, dialplans (edit, validate, simulate, what-if, publish, roll back), calls and
the audit trail. Server-rendered pages (Starlette + Jinja2) and one small script served from this package;
nothing is fetched from the internet. See docs/console.md."""

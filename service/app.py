"""The web side: the JSON API, the student's pages (upload, status, feedback) and the instructor's.

Who is asking: ``Authorization: Bearer TOKEN`` (API, curl, the notebook's helper) or, in a browser, a
session cookie that the login form (or the upload form) sets after checking a token. Tokens travel only
in headers and form bodies, never in a URL, so they never reach the access log or a page. A student sees
only their own submissions: any other id answers 404. Pages are Jinja2 templates with autoescape on;
the feedback page (made by the grading pipeline, which escapes the student's outputs) is served with a
Content-Security-Policy that runs no script at all.
"""

import contextlib
import csv
import io
import pathlib
from typing import Annotated

from fastapi import FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from . import db
from .core import Refused, Service, aware

TEMPLATES = Jinja2Templates(directory=str(pathlib.Path(__file__).parent / "templates"))
COOKIE = "service_session"
FormStr = Annotated[str, Form()]
FormFile = Annotated[UploadFile, File()]
NO_SCRIPT = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'"


def create_app(settings, grade=None):
    """The FastAPI app over a Service; the workers start and stop with the app (its lifespan)."""
    service = Service(settings, grade=grade)

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        service.start()
        try:
            yield
        finally:
            service.stop()

    app = FastAPI(title="Course submission service", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.service = service

    @app.exception_handler(Refused)
    async def _refused(_request, err):
        return JSONResponse({"detail": err.reason}, status_code=err.status, headers=err.headers)

    @app.middleware("http")
    async def _headers(request, call_next):
        response = await call_next(request)
        response.headers.setdefault("Content-Security-Policy", NO_SCRIPT)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        return response

    def caller(request, role="student", *, page=False):
        """(role, subject) of the request's token or session; 401 (API) or a redirect to the login (page)."""
        header = request.headers.get("authorization", "")
        secret = header[7:].strip() if header.lower().startswith("bearer ") else request.cookies.get(COOKIE)
        found = db.who(service.Session, secret)
        if found is None or found[0] != role:
            if page:
                raise HTTPException(303, headers={"Location": f"/login?next={request.url.path}"})
            raise HTTPException(401, "a valid token is needed: Authorization: Bearer TOKEN",
                                headers={"WWW-Authenticate": "Bearer"})
        return found

    def describe(request, row):
        feedback = str(request.url_for("feedback_page", sub_id=row.id)) if row.feedback else None
        return {"id": row.id, "assignment": row.assignment, "status": row.status, "late": row.late,
                "submitted": aware(row.created).isoformat(timespec="seconds"), "position": service.position(row),
                "score": row.score, "max_score": row.max_score, "parts": row.parts or [],
                "manual_parts": row.manual_parts or [], "reason": row.reason or "",
                "url": str(request.url_for("status_page", sub_id=row.id)), "feedback_url": feedback}

    async def accept(request, student, assignment, notebook):
        declared = int(request.headers.get("content-length") or 0)
        if declared > settings.max_bytes + 64 * 1024:
            raise Refused(413, f"the file is larger than {settings.max_bytes / 2**20:.3g} MB")
        raw = await notebook.read(settings.max_bytes + 1)
        return service.submit(student, assignment, notebook.filename or "", raw)

    # ---------------------------------------------------------------------------------------- API

    @app.post("/api/submissions", status_code=202)
    async def api_submit(request: Request, assignment: FormStr, notebook: FormFile):
        _, student = caller(request)
        row = await accept(request, student, assignment, notebook)
        url = str(request.url_for("status_page", sub_id=row.id))
        return JSONResponse({"id": row.id, "url": url, "status": row.status}, status_code=202)

    @app.get("/api/submissions")
    async def api_list(request: Request):
        _, student = caller(request)
        return [describe(request, row) for row in service.mine(student)]

    @app.get("/api/submissions/{sub_id}")
    async def api_status(request: Request, sub_id: int):
        _, student = caller(request)
        row = service.get(sub_id, student)
        if row is None:
            raise HTTPException(404, "no such submission of yours")
        return describe(request, row)

    # -------------------------------------------------------------------------------------- pages

    def page(request, name, status=200, **context):
        return TEMPLATES.TemplateResponse(request, name, context, status_code=status)

    @app.get("/", response_class=HTMLResponse)
    async def upload_page(request: Request):
        return page(request, "upload.html", assignments=service.assignments)

    @app.post("/", response_class=HTMLResponse)
    async def upload_form(request: Request, assignment: FormStr, notebook: FormFile,
                          token: Annotated[str, Form()] = ""):
        secret = token or request.cookies.get(COOKIE)  # a token typed in wins over the browser's session
        found = db.who(service.Session, secret)
        if found is None or found[0] != "student":
            return page(request, "upload.html", 401, assignments=service.assignments, error="unknown token")
        try:
            row = await accept(request, found[1], assignment, notebook)
        except Refused as err:
            return page(request, "upload.html", err.status, assignments=service.assignments, error=err.reason)
        response = RedirectResponse(f"/submissions/{row.id}", status_code=303)
        if token:
            _login(response, found)
        return response

    def _login(response, found):
        session = db.new_secret()
        with service.Session.begin() as s:
            s.add(db.Token(hash=db.digest(session), role=found[0], subject=found[1], kind="session"))
        response.set_cookie(COOKIE, session, httponly=True, samesite="strict", max_age=30 * 24 * 3600)

    @app.get("/login", response_class=HTMLResponse)
    async def login_page(request: Request, next: str = "/"):
        return page(request, "login.html", next=next if next.startswith("/") and not next.startswith("//") else "/")

    @app.post("/login")
    async def login(request: Request, token: FormStr, next: Annotated[str, Form()] = "/"):
        found = db.who(service.Session, token)
        target = next if next.startswith("/") and not next.startswith("//") else "/"
        if found is None:
            return page(request, "login.html", 401, next=target, error="unknown token")
        response = RedirectResponse(target, status_code=303)
        _login(response, found)
        return response

    @app.get("/submissions/{sub_id}", response_class=HTMLResponse, name="status_page")
    async def status_page(request: Request, sub_id: int):
        _, student = caller(request, page=True)
        row = service.get(sub_id, student)
        if row is None:
            raise HTTPException(404, "no such submission of yours")
        return page(request, "status.html", sub=describe(request, row))

    @app.get("/submissions/{sub_id}/feedback", name="feedback_page")
    async def feedback_page(request: Request, sub_id: int):
        _, student = caller(request, page=True)
        row = service.get(sub_id, student)
        if row is None or not row.feedback or not pathlib.Path(row.feedback).exists():
            raise HTTPException(404, "no feedback for such a submission of yours")
        return FileResponse(row.feedback, media_type="text/html; charset=utf-8")

    # --------------------------------------------------------------------------------- instructor

    @app.get("/instructor", response_class=HTMLResponse)
    async def instructor_home(request: Request):
        caller(request, "instructor", page=True)
        return page(request, "instructor_home.html", assignments=service.assignments)

    @app.get("/instructor/{assignment}", response_class=HTMLResponse)
    async def instructor_page(request: Request, assignment: str):
        caller(request, "instructor", page=True)
        if assignment not in service.assignments:
            raise HTTPException(404, "no such assignment")
        table, parts = service.gradebook(assignment)
        return page(request, "instructor.html", assignment=assignment, table=table, parts=parts,
                    policy=service.policies[assignment])

    @app.get("/instructor/{assignment}/grades.csv")
    @app.get("/instructor/{assignment}/{kind}.csv")
    async def grades_csv(request: Request, assignment: str, kind: str = "grades"):
        """The counted grades: ``grades.csv`` (everything), ``canvas.csv`` and ``moodle.csv`` (their imports)."""
        caller(request, "instructor", page=True)
        if assignment not in service.assignments or kind not in ("grades", "canvas", "moodle"):
            raise HTTPException(404, "no such assignment or export")
        out = io.StringIO()
        csv.writer(out).writerows(service.grades_csv(assignment, "plain" if kind == "grades" else kind))
        name = f"{assignment}-grades.csv" if kind == "grades" else f"{assignment}-{kind}.csv"
        return Response(out.getvalue(), media_type="text/csv",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})

    @app.post("/instructor/{assignment}/regrade")
    async def regrade(request: Request, assignment: str, student: Annotated[str, Form()] = ""):
        caller(request, "instructor", page=True)
        if assignment not in service.assignments:
            raise HTTPException(404, "no such assignment")
        n = service.regrade(assignment, student or None)
        if "text/html" in request.headers.get("accept", ""):
            return RedirectResponse(f"/instructor/{assignment}", status_code=303)
        return {"queued": n}

    return app

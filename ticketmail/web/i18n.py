"""The portal's texts in German and English, side by side, and which language a visitor reads."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from ticketmail.web.desk_texts import DESK_TEXTS

__all__ = ["CATALOGUES", "LANGUAGES", "Translate", "negotiate", "translator"]

LANGUAGES = ("de", "en")
Translate = Callable[..., str]

# key: (German, English). `{name}` fields are filled by the page (autoescaped like any value).
_TEXTS: dict[str, tuple[str, str]] = {
    "brand": ("Support-Portal", "Support portal"),
    "skip": ("Zum Inhalt", "Skip to content"),
    "nav.tickets": ("Tickets", "Tickets"),
    "nav.new": ("Neues Ticket", "New ticket"),
    "nav.account": ("Konto", "Account"),
    "nav.logout": ("Abmelden", "Log out"),
    "nav.login": ("Anmelden", "Log in"),
    "nav.register": ("Registrieren", "Register"),
    "nav.language": ("Sprache", "Language"),
    "field.email": ("E-Mail-Adresse", "Email address"),
    "field.password": ("Passwort", "Password"),
    "field.new_password": (
        "Neues Passwort (mindestens 10 Zeichen)",
        "New password (at least 10 characters)",
    ),
    "field.current_password": ("Bisheriges Passwort", "Current password"),
    "field.name": ("Name", "Name"),
    "field.customer_number": (
        "Kundennummer Ihrer Einrichtung",
        "Your institution's customer number",
    ),
    "field.language": ("Sprache", "Language"),
    "field.subject": ("Betreff", "Subject"),
    "field.body": ("Ihre Nachricht", "Your message"),
    "field.attachments": (
        "Dateien (höchstens {count}, zusammen bis {size})",
        "Files (at most {count}, {size} in all)",
    ),
    "field.status": ("Status", "Status"),
    "field.search": ("Suche", "Search"),
    "search.cut": (
        "Die Suche wurde nach der vorgesehenen Zeit abgebrochen; gezeigt wird, was bis dahin "
        "gefunden war. Ein genauerer Suchbegriff hilft.",
        "The search was cut short after its allotted time; shown is what it had found by "
        "then. A more specific term helps.",
    ),
    "field.mine": ("Nur meine", "Only mine"),
    "lang.de": ("Deutsch", "Deutsch"),
    "lang.en": ("English", "English"),
    "status.new": ("neu", "new"),
    "status.open": ("in Bearbeitung", "in progress"),
    "status.answered": ("beantwortet", "answered"),
    "status.closed": ("geschlossen", "closed"),
    "status.any": ("alle", "any"),
    "login.title": ("Anmelden", "Log in"),
    "login.submit": ("Anmelden", "Log in"),
    "login.failed": (
        "Anmeldung fehlgeschlagen: Adresse oder Passwort stimmen nicht.",
        "Login failed: wrong address or password.",
    ),
    "login.locked": (
        "Zu viele Fehlversuche. Bitte versuchen Sie es in {minutes} Minuten erneut oder setzen Sie Ihr Passwort zurück.",
        "Too many failed attempts. Please try again in {minutes} minutes, or reset your password.",
    ),
    "login.locked_day": (
        "Zu viele Fehlversuche für diese Adresse heute. Bitte setzen Sie Ihr Passwort zurück oder melden Sie sich in einem Browser an, in dem Sie schon angemeldet waren.",
        "Too many failed attempts at this address today. Please reset your password, or log in from a browser you logged in with before.",
    ),
    "login.forgot": (
        "Passwort vergessen oder noch keines?",
        "Forgot your password, or have none yet?",
    ),
    "login.no_account": ("Noch kein Konto?", "No account yet?"),
    "register.title": ("Registrieren", "Register"),
    "register.intro": (
        "Mit einem Konto sehen und beantworten Sie alle Tickets Ihrer Einrichtung.",
        "With an account you see and answer every ticket of your institution.",
    ),
    "register.submit": ("Erstellen", "Create"),
    "register.check_mail": ("Bitte prüfen Sie Ihr Postfach", "Please check your mail"),
    "register.check_mail_text": (
        "Wir haben eine E-Mail an die angegebene Adresse geschickt. Folgen Sie dem Link darin, um fortzufahren.",
        "We have sent an email to the address you entered. Follow the link in it to go on.",
    ),
    "confirm.title": ("Registrierung bestätigen", "Confirm your registration"),
    "confirm.text": (
        "Bestätigen Sie Ihre Registrierung mit dem Passwort, das Sie bei der Registrierung gewählt haben.",
        "Confirm your registration with the password you chose when you registered.",
    ),
    "confirm.wrong_password": (
        "Das Passwort stimmt nicht mit dem der Registrierung überein; nichts wurde bestätigt.",
        "The password is not the one chosen at registration; nothing was confirmed.",
    ),
    "confirm.submit": ("Registrierung bestätigen", "Confirm registration"),
    "confirm.active": (
        "Ihr Konto ist bestätigt. Sie können sich jetzt anmelden.",
        "Your account is confirmed. You can log in now.",
    ),
    "confirm.pending": (
        "Ihre Adresse ist bestätigt. Das Support-Team prüft noch, ob sie zu Ihrer Einrichtung gehört; bis zur Freigabe können Sie sich anmelden, aber keine Tickets sehen.",
        "Your address is confirmed. The support team still checks that it belongs to your institution; until then you can log in but see no tickets.",
    ),
    "link.invalid": (
        "Dieser Link ist ungültig, abgelaufen oder wurde schon benutzt.",
        "This link is invalid, has expired or was used already.",
    ),
    "forgot.title": ("Passwort festlegen", "Set a password"),
    "forgot.intro": (
        "Wir schicken Ihnen einen Link, mit dem Sie ein Passwort festlegen.",
        "We send you a link to set a password with.",
    ),
    "forgot.submit": ("Link anfordern", "Send me a link"),
    "forgot.sent": (
        "Wenn für diese Adresse ein Konto besteht, ist eine E-Mail mit einem Link unterwegs.",
        "If there is an account for this address, an email with a link is on its way.",
    ),
    "reset.title": ("Neues Passwort", "New password"),
    "reset.submit": ("Passwort speichern", "Save password"),
    "reset.done": (
        "Ihr Passwort ist gespeichert. Bitte melden Sie sich an.",
        "Your password is saved. Please log in.",
    ),
    "account.title": ("Ihr Konto", "Your account"),
    "account.save": ("Speichern", "Save"),
    "account.password": ("Passwort ändern", "Change password"),
    "account.password_saved": (
        "Ihr Passwort ist geändert; Ihre anderen Sitzungen sind beendet.",
        "Your password is changed; your other sessions have ended.",
    ),
    "account.wrong_password": (
        "Das bisherige Passwort stimmt nicht.",
        "The current password is wrong.",
    ),
    "account.institution": ("Einrichtung", "Institution"),
    "pending.title": ("Freigabe ausstehend", "Approval pending"),
    "pending.text": (
        "Ihr Konto ist bestätigt, wartet aber noch auf die Freigabe durch das Support-Team. Danach sehen Sie hier die Tickets Ihrer Einrichtung.",
        "Your account is confirmed but still waits for the support team's approval. Then you see your institution's tickets here.",
    ),
    "tickets.title": ("Tickets von {customer}", "Tickets of {customer}"),
    "tickets.none": ("Keine Tickets gefunden.", "No tickets found."),
    "tickets.filter": ("Filtern", "Filter"),
    "tickets.number": ("Nummer", "Number"),
    "tickets.requester": ("Von", "From"),
    "tickets.activity": ("Letzte Aktivität", "Last activity"),
    "tickets.count": ("{total} Tickets", "{total} tickets"),
    "tickets.count_one": ("1 Ticket", "1 ticket"),
    "tickets.page": ("Seite {page} von {pages}", "Page {page} of {pages}"),
    "tickets.previous": ("Zurück", "Previous"),
    "tickets.next": ("Weiter", "Next"),
    "new.title": ("Neues Ticket", "New ticket"),
    "new.submit": ("Ticket eröffnen", "Open ticket"),
    "new.hint": (
        "Bitte ein Ticket je Fehler, Frage oder Wunsch. Bildschirmfotos helfen uns.",
        "One ticket per error, question or request, please. Screenshots help us.",
    ),
    "ticket.title": ("Ticket {number}", "Ticket {number}"),
    "ticket.created": ("Eröffnet", "Opened"),
    "ticket.previous": (
        "Folgt auf das geschlossene Ticket {number}.",
        "Follows the closed ticket {number}.",
    ),
    "ticket.support": ("Support", "Support"),
    "ticket.quoted": ("Ganze Nachricht mit Zitat", "Whole message with quoted text"),
    "ticket.files": ("Dateien", "Files"),
    "ticket.reply": ("Antworten", "Reply"),
    "ticket.reply_submit": ("Antwort senden", "Send reply"),
    "ticket.close": ("Ticket schließen", "Close ticket"),
    "ticket.reopen": ("Wieder öffnen", "Reopen"),
    "ticket.reply_reopens": (
        "Das Ticket ist geschlossen; eine Antwort öffnet es wieder.",
        "The ticket is closed; a reply reopens it.",
    ),
    "ticket.reply_new": (
        "Das Ticket ist seit mehr als {days} Tagen geschlossen; eine Antwort eröffnet ein neues Ticket.",
        "The ticket has been closed for more than {days} days; a reply opens a new ticket.",
    ),
    "ticket.reopen_too_late": (
        "Das Ticket ist seit mehr als {days} Tagen geschlossen. Schreiben Sie bitte eine Antwort; sie eröffnet ein neues Ticket.",
        "The ticket has been closed for more than {days} days. Please write a reply; it opens a new ticket.",
    ),
    "ticket.download": ("herunterladen", "download"),
    "ticket.web": ("über das Portal", "via the portal"),
    "offer.title": ("Kein aktiver Supportvertrag", "No active support contract"),
    "offer.text": (
        "Ihre Einrichtung hat derzeit weder einen Supportvertrag noch eine Testphase. Sie können Ihre Tickets lesen; für neue Anfragen fordern Sie bitte ein Angebot an bei {address}.",
        "Your institution currently has neither a support contract nor a trial. You can read your tickets; for new requests please ask for an offer at {address}.",
    ),
    "error.required": ("Bitte füllen Sie dieses Feld aus.", "Please fill in this field."),
    "error.email": ("Das ist keine gültige E-Mail-Adresse.", "This is not a valid email address."),
    "error.password_short": (
        "Das Passwort muss mindestens 10 Zeichen lang sein.",
        "The password must be at least 10 characters long.",
    ),
    "error.password_email": (
        "Das Passwort darf nicht Ihre E-Mail-Adresse sein.",
        "The password must not be your email address.",
    ),
    "error.language": (
        "Bitte wählen Sie Deutsch oder English.",
        "Please choose Deutsch or English.",
    ),
    "error.too_many_files": (
        "Höchstens {count} Dateien je Nachricht. Es wurde nichts gespeichert; "
        "bitte wählen Sie die Dateien neu.",
        "At most {count} files per message. Nothing was saved; please choose the files again.",
    ),
    "error.too_big": (
        "Die Dateien sind zusammen größer als {size}. Es wurde nichts gespeichert; "
        "bitte wählen Sie die Dateien neu.",
        "The files are larger than {size} in all. Nothing was saved; please choose the files "
        "again.",
    ),
    "error.no_files": (
        "Dieses Formular nimmt keine Dateien an. Es wurde nichts gespeichert.",
        "This form takes no files. Nothing was saved.",
    ),
    "error.body_too_big": (
        "Die Anfrage war zu groß. Es wurde nichts gespeichert.",
        "The request was too large. Nothing was saved.",
    ),
    "error.too_slow": (
        "Die Anfrage kam zu langsam an und wurde abgebrochen. Es wurde nichts gespeichert.",
        "The request arrived too slowly and was ended. Nothing was saved.",
    ),
    "error.csrf_kept": (
        "Das Formular war abgelaufen; es wurde nichts gespeichert. Ihr Text ist noch da: bitte "
        "senden Sie ihn erneut (Dateien bitte neu wählen).",
        "The form had expired; nothing was saved. Your text is still here: please send it "
        "again (choose any files again).",
    ),
    "error.empty": (
        "Bitte schreiben Sie eine Nachricht oder hängen Sie eine Datei an.",
        "Please write a message or attach a file.",
    ),
    "error.csrf": (
        "Das Formular ist abgelaufen. Bitte laden Sie die Seite neu und versuchen Sie es noch einmal.",
        "The form has expired. Please reload the page and try again.",
    ),
    "error.not_found": ("Diese Seite gibt es nicht.", "There is no such page."),
    "error.not_found_title": ("Nicht gefunden", "Not found"),
    "error.forbidden_title": ("Nicht erlaubt", "Not allowed"),
    "error.server": (
        "Etwas ist schiefgegangen. Bitte versuchen Sie es gleich noch einmal.",
        "Something went wrong. Please try again in a moment.",
    ),
    "error.server_title": ("Fehler", "Error"),
    "error.bad_request": (
        "Die Anfrage war unvollständig. Bitte versuchen Sie es noch einmal.",
        "The request was incomplete. Please try again.",
    ),
    "error.too_many": (
        "Zu viele Versuche. Bitte warten Sie {minutes} Minuten.",
        "Too many attempts. Please wait {minutes} minutes.",
    ),
    "back": ("Zurück", "Back"),
    # Phone numbers and channels (SPEC 9.1).
    "field.phone": ("Telefonnummer (freiwillig)", "Phone number (optional)"),
    "error.phone": (
        "Das ist keine Telefonnummer: erlaubt sind Ziffern, Leerzeichen und + - / ( ), höchstens 30 Zeichen.",
        "That is not a phone number: digits, spaces and + - / ( ) only, at most 30 characters.",
    ),
    "ticket.channel": ("Kanal", "Channel"),
    "channel.mail": ("E-Mail", "email"),
    "channel.web": ("Portal", "portal"),
    "channel.phone": ("Telefon", "phone"),
    "channel.other": ("anderer Weg", "other"),
}

# --- pasted and dropped files in the portal's and the desk's forms (SPEC 8.3, 9; issue 24) ----
_TEXTS.update(
    {
        "attach.pasted": ("Bildschirmfoto", "screenshot"),
        "attach.remove": ("Entfernen", "Remove"),
        "attach.hint": (
            "Bildschirmfotos können Sie auch mit Strg+V einfügen und Dateien hierher ziehen.",
            "You can also paste screenshots (Ctrl+V) and drop files here.",
        ),
        "attach.too_many": (
            "Höchstens {count} Dateien; weitere wurden nicht hinzugefügt.",
            "At most {count} files; no more were added.",
        ),
        "attach.too_big": (
            "Zusammen höchstens {size}; was darüber hinausging, wurde nicht hinzugefügt.",
            "At most {size} in all; what went beyond was not added.",
        ),
    }
)
# --- the guide's words, the line confirming each action (issue 24, flash) -------------------
_TEXTS.update(
    {
        "login.register_now": ("Registrieren Sie sich jetzt", "Register now"),
        "done.created": ("Ihr Ticket wurde eröffnet.", "Your ticket was opened."),
        "done.answered": ("Ihre Antwort wurde gesendet.", "Your answer was sent."),
        "done.closed": ("Das Ticket wurde geschlossen.", "The ticket was closed."),
        "done.reopened": ("Das Ticket wurde wieder geöffnet.", "The ticket was reopened."),
        "done.account": ("Ihre Angaben wurden gespeichert.", "Your details were saved."),
    }
)
# --- the database away (SPEC 10, issue 25: pgdown) ------------------------------------------
_TEXTS.update(
    {
        "error.unavailable_title": ("Kurz nicht erreichbar", "Briefly unavailable"),
        "error.unavailable": (
            "Der Dienst ist gerade kurz nicht erreichbar. Bitte versuchen Sie es in einer Minute noch einmal.",
            "The service is briefly unavailable. Please try again in a minute.",
        ),
    }
)

_TEXTS.update(DESK_TEXTS)


def _catalogue(index: int) -> dict[str, str]:
    return {key: pair[index] for key, pair in _TEXTS.items()}


CATALOGUES: Mapping[str, Mapping[str, str]] = {
    lang: _catalogue(i) for i, lang in enumerate(LANGUAGES)
}


def translator(lang: str) -> Translate:
    """`t(key, **fields)` in one language."""
    texts = CATALOGUES[lang]

    def t(key: str, /, **fields: object) -> str:
        text = texts[key]
        return text.format(**fields) if fields else text

    return t


def negotiate(accept_language: str, *, default: str) -> str:
    """The first of our languages in an Accept-Language header (by weight), else `default`."""
    best: tuple[float, int, str] | None = None
    for position, item in enumerate(accept_language.split(",")[:20]):
        tag, _, params = item.strip().partition(";")
        primary = tag.strip().split("-")[0].lower()
        if primary not in LANGUAGES:
            continue
        weight = 1.0
        params = params.strip()
        if params.startswith("q="):
            try:
                weight = float(params[2:])
            except ValueError:
                continue
        if weight <= 0:
            continue
        key = (-weight, position, primary)
        if best is None or key < best:
            best = key
    return best[2] if best is not None else default

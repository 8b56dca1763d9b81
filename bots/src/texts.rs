//! Every sentence the guest sees, in Russian (the default), Kazakh and English.
//!
//! Functions returning `&'static str` are fixed sentences; those returning `String` fill in
//! names, dates and amounts. Money is written like `65 000 ₸`, dates like `25.08.2025`.

use chrono::{Datelike, NaiveDate};

use domain::booking::RATINGS;
use domain::notice::Notice;
use domain::user::Language;
use domain::{CHECK_IN_HOUR, CHECK_OUT_HOUR};

use crate::{BookingSummary, Button, Choice, Offer, Reply, Stay};

/// A local hour as the guest reads it (`14:00`).
fn hour(h: u32) -> String {
    format!("{h:02}:00")
}

fn pick(lang: Language, ru: &'static str, kk: &'static str, en: &'static str) -> &'static str {
    match lang {
        Language::Ru => ru,
        Language::Kk => kk,
        Language::En => en,
    }
}

// ----- formatting -----

/// `65000` → `65 000 ₸` (a regular space between thousands).
pub fn money(kzt: i64) -> String {
    let digits = kzt.unsigned_abs().to_string();
    let mut grouped = String::with_capacity(digits.len() + digits.len() / 3);
    // A space before each digit whose index has the length's remainder (counting from the
    // right in threes), except the first.
    let lead = digits.len() % 3;
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && i % 3 == lead {
            grouped.push(' ');
        }
        grouped.push(c);
    }
    let sign = if kzt < 0 { "-" } else { "" };
    format!("{sign}{grouped} ₸")
}

/// `25.08.2025`.
pub fn date(d: NaiveDate) -> String {
    d.format("%d.%m.%Y").to_string()
}

/// `25.08.2025–28.08.2025`.
pub fn dates(from: NaiveDate, to: NaiveDate) -> String {
    format!("{}–{}", date(from), date(to))
}

/// `25.08–28.08` (for button labels).
pub fn short_dates(from: NaiveDate, to: NaiveDate) -> String {
    format!("{}–{}", from.format("%d.%m"), to.format("%d.%m"))
}

/// Picks the Russian plural form for `n`: one (1, 21), few (2–4, 22–24), many (5–20, 25, …).
fn ru_plural(n: i64, one: &'static str, few: &'static str, many: &'static str) -> &'static str {
    let n = n.unsigned_abs();
    match (n % 10, n % 100) {
        (_, 11..=14) => many,
        (1, _) => one,
        (2..=4, _) => few,
        _ => many,
    }
}

/// `3 ночи` / `3 түн` / `3 nights`.
pub fn nights(n: i64, lang: Language) -> String {
    match lang {
        Language::Ru => format!("{n} {}", ru_plural(n, "ночь", "ночи", "ночей")),
        Language::Kk => format!("{n} түн"),
        Language::En => format!("{n} {}", if n == 1 { "night" } else { "nights" }),
    }
}

/// `2 гостя` / `2 қонақ` / `2 guests`.
pub fn guests(n: u32, lang: Language) -> String {
    let n = i64::from(n);
    match lang {
        Language::Ru => format!("{n} {}", ru_plural(n, "гость", "гостя", "гостей")),
        Language::Kk => format!("{n} қонақ"),
        Language::En => format!("{n} {}", if n == 1 { "guest" } else { "guests" }),
    }
}

/// The name of month `1..=12` (anything else gives an empty string).
pub fn month_name(month: u32, lang: Language) -> &'static str {
    const RU: [&str; 12] = [
        "Январь",
        "Февраль",
        "Март",
        "Апрель",
        "Май",
        "Июнь",
        "Июль",
        "Август",
        "Сентябрь",
        "Октябрь",
        "Ноябрь",
        "Декабрь",
    ];
    const KK: [&str; 12] = [
        "Қаңтар",
        "Ақпан",
        "Наурыз",
        "Сәуір",
        "Мамыр",
        "Маусым",
        "Шілде",
        "Тамыз",
        "Қыркүйек",
        "Қазан",
        "Қараша",
        "Желтоқсан",
    ];
    const EN: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    let names = match lang {
        Language::Ru => &RU,
        Language::Kk => &KK,
        Language::En => &EN,
    };
    month
        .checked_sub(1)
        .and_then(|i| names.get(i as usize))
        .copied()
        .unwrap_or("")
}

/// `Август 2025`.
pub fn month_title(month: NaiveDate, lang: Language) -> String {
    format!("{} {}", month_name(month.month(), lang), month.year())
}

/// The local name of one of [`crate::CITIES`]; any other city as given.
pub fn city_name(city: &str, lang: Language) -> String {
    let local = match (city, lang) {
        (_, Language::En) => None,
        ("Almaty", _) => Some("Алматы"),
        ("Astana", _) => Some("Астана"),
        ("Shymkent", _) => Some("Шымкент"),
        ("Aktau", Language::Ru) => Some("Актау"),
        ("Aktau", _) => Some("Ақтау"),
        ("Karaganda", Language::Ru) => Some("Караганда"),
        ("Karaganda", _) => Some("Қарағанды"),
        _ => None,
    };
    local.map_or_else(|| city.to_string(), str::to_string)
}

/// A rating as shown: `★ 4.5`.
pub fn rating(r: f64) -> String {
    format!("★ {r:.1}")
}

// ----- buttons -----

pub fn back_button(lang: Language) -> &'static str {
    pick(lang, "◀ Назад", "◀ Артқа", "◀ Back")
}

pub fn cancel_button(lang: Language) -> &'static str {
    pick(lang, "✖ Отмена", "✖ Болдырмау", "✖ Cancel")
}

pub fn book_button(lang: Language) -> &'static str {
    pick(lang, "Забронировать", "Брондау", "Book")
}

pub fn more_button(lang: Language) -> &'static str {
    pick(lang, "Ещё варианты ▶", "Тағы ▶", "More ▶")
}

pub fn book_and_pay_button(lang: Language) -> &'static str {
    pick(
        lang,
        "Забронировать и оплатить Kaspi",
        "Брондап, Kaspi арқылы төлеу",
        "Book and pay with Kaspi",
    )
}

pub fn pay_button(lang: Language) -> &'static str {
    pick(
        lang,
        "Оплатить Kaspi",
        "Kaspi арқылы төлеу",
        "Pay with Kaspi",
    )
}

pub fn yes_cancel_button(lang: Language) -> &'static str {
    pick(lang, "Да, отменить", "Иә, болдырмау", "Yes, cancel it")
}

pub fn no_button(lang: Language) -> &'static str {
    pick(lang, "Нет", "Жоқ", "No")
}

/// The language buttons, each in its own language: `(label, code)`.
pub fn lang_options() -> [(&'static str, Language); 3] {
    [
        ("Русский", Language::Ru),
        ("Қазақша", Language::Kk),
        ("English", Language::En),
    ]
}

// ----- commands -----

/// The greeting of `/start`, ending with the city question.
pub fn welcome(lang: Language) -> &'static str {
    pick(
        lang,
        "Здравствуйте! Это ZhilyeGO — квартиры посуточно по всему Казахстану.\n\
         В каком городе ищем жильё? Нажмите кнопку или напишите название города.",
        "Сәлеметсіз бе! Бұл — ZhilyeGO: Қазақстан бойынша тәулікке пәтерлер.\n\
         Қай қаладан пәтер іздейміз? Батырманы басыңыз немесе қала атауын жазыңыз.",
        "Hello! This is ZhilyeGO — apartments by the night all over Kazakhstan.\n\
         Which city are you going to? Tap a button or type the name of the city.",
    )
}

pub fn ask_city(lang: Language) -> &'static str {
    pick(
        lang,
        "В каком городе ищем жильё? Нажмите кнопку или напишите название города.",
        "Қай қаладан пәтер іздейміз? Батырманы басыңыз немесе қала атауын жазыңыз.",
        "Which city are you going to? Tap a button or type the name of the city.",
    )
}

pub fn bad_city(lang: Language) -> &'static str {
    pick(
        lang,
        "Напишите, пожалуйста, название города (до 100 символов).",
        "Қала атауын жазыңыз (100 таңбадан аспауы керек).",
        "Please type the name of a city (up to 100 characters).",
    )
}

/// `/help`: what the bot does and its commands.
pub fn help(lang: Language) -> &'static str {
    pick(
        lang,
        "ZhilyeGO помогает найти и забронировать квартиру посуточно с оплатой через Kaspi.\n\n\
         /start — новый поиск\n\
         /mybookings — мои бронирования\n\
         /cancel — остановить поиск или отменить бронирование\n\
         /lang — сменить язык\n\
         /help — эта справка",
        "ZhilyeGO пәтерді тәулікке тауып, Kaspi арқылы төлеп брондауға көмектеседі.\n\n\
         /start — жаңа іздеу\n\
         /mybookings — менің броньдарым\n\
         /cancel — іздеуді тоқтату немесе броньды болдырмау\n\
         /lang — тілді ауыстыру\n\
         /help — осы анықтама",
        "ZhilyeGO finds you an apartment by the night and books it, paid with Kaspi.\n\n\
         /start — new search\n\
         /mybookings — my bookings\n\
         /cancel — stop the search or cancel a booking\n\
         /lang — change the language\n\
         /help — this help",
    )
}

/// `/lang`: the question is asked in all three languages, whatever the current one.
pub fn choose_lang(_lang: Language) -> &'static str {
    "Выберите язык · Тілді таңдаңыз · Choose your language"
}

/// Said in the language just chosen.
pub fn lang_set(lang: Language) -> &'static str {
    pick(
        lang,
        "Язык: русский. Чтобы найти жильё, нажмите /start.",
        "Тіл: қазақша. Пәтер іздеу үшін /start басыңыз.",
        "Language: English. Send /start to search for a place to stay.",
    )
}

/// After `/cancel` (or the cancel button) in the middle of the search.
pub fn stopped(lang: Language) -> &'static str {
    pick(
        lang,
        "Хорошо, остановились. Чтобы начать заново — /start.",
        "Жақсы, тоқтаттық. Қайта бастау үшін — /start.",
        "OK, stopped. Send /start to begin again.",
    )
}

pub fn use_buttons(lang: Language) -> &'static str {
    pick(
        lang,
        "Пожалуйста, воспользуйтесь кнопками.",
        "Төмендегі батырмаларды пайдаланыңыз.",
        "Please use the buttons.",
    )
}

/// A message arrived while a search, booking or cancellation is under way.
pub fn please_wait(lang: Language) -> &'static str {
    pick(
        lang,
        "Минутку, обрабатываю запрос…",
        "Бір сәт, сұранысыңызды өңдеп жатырмын…",
        "One moment, working on it…",
    )
}

// ----- dates and guests -----

pub fn ask_check_in(city: &str, month: NaiveDate, lang: Language) -> String {
    let city = city_name(city, lang);
    let month = month_title(month, lang);
    match lang {
        Language::Ru => format!(
            "{city}. Дата заезда? Выберите день ({month}) или напишите дату, например 25.08."
        ),
        Language::Kk => format!(
            "{city}. Кіру күні қашан? Күнді таңдаңыз ({month}) немесе жазыңыз, мысалы 25.08."
        ),
        Language::En => {
            format!("{city}. Check-in date? Pick a day ({month}) or type a date like 25.08.")
        }
    }
}

pub fn ask_check_out(check_in: NaiveDate, month: NaiveDate, lang: Language) -> String {
    let check_in = date(check_in);
    let month = month_title(month, lang);
    match lang {
        Language::Ru => format!(
            "Заезд {check_in}. Дата выезда? Выберите день ({month}) или напишите дату, например 28.08."
        ),
        Language::Kk => format!(
            "Кіру: {check_in}. Шығу күні қашан? Күнді таңдаңыз ({month}) немесе жазыңыз, мысалы 28.08."
        ),
        Language::En => format!(
            "Check-in {check_in}. Check-out date? Pick a day ({month}) or type a date like 28.08."
        ),
    }
}

pub fn ask_guests(check_in: NaiveDate, check_out: NaiveDate, lang: Language) -> String {
    let stay = dates(check_in, check_out);
    let n = nights((check_out - check_in).num_days(), lang);
    match lang {
        Language::Ru => format!("{stay}, {n}. Сколько будет гостей?"),
        Language::Kk => format!("{stay}, {n}. Неше қонақ болады?"),
        Language::En => format!("{stay}, {n}. How many guests?"),
    }
}

pub fn bad_date(lang: Language) -> &'static str {
    pick(
        lang,
        "Не понял дату. Напишите, например, 25.08 или 25.08.2025 — или выберите день кнопкой.",
        "Күнді түсінбедім. Былай жазыңыз: 25.08 немесе 25.08.2025 — не күнді батырмамен таңдаңыз.",
        "I didn't get that date. Type it like 25.08 or 25.08.2025, or pick a day below.",
    )
}

pub fn past_date(lang: Language) -> &'static str {
    pick(
        lang,
        "Эта дата уже прошла — выберите другую.",
        "Бұл күн өтіп кетті — басқа күнді таңдаңыз.",
        "That date has already passed — please pick another one.",
    )
}

pub fn too_far_ahead(lang: Language) -> &'static str {
    pick(
        lang,
        "Бронировать можно не больше чем на два года вперёд.",
        "Ең көбі екі жыл алға брондауға болады.",
        "You can book at most two years ahead.",
    )
}

pub fn check_out_not_after(check_in: NaiveDate, lang: Language) -> String {
    let check_in = date(check_in);
    match lang {
        Language::Ru => format!("Дата выезда должна быть позже даты заезда ({check_in})."),
        Language::Kk => format!("Шығу күні кіру күнінен ({check_in}) кейін болуы керек."),
        Language::En => format!("Check-out must be after check-in ({check_in})."),
    }
}

pub fn stay_too_long(lang: Language) -> &'static str {
    pick(
        lang,
        "Одно бронирование — не больше 90 ночей.",
        "Бір бронь 90 түннен аспауы керек.",
        "One booking can be at most 90 nights.",
    )
}

pub fn bad_guests(lang: Language) -> &'static str {
    pick(
        lang,
        "Напишите число гостей от 1 до 20.",
        "Қонақ санын 1-ден 20-ға дейін жазыңыз.",
        "Please type a number of guests from 1 to 20.",
    )
}

// ----- results -----

pub fn nothing_found(city: &str, lang: Language) -> String {
    let city = city_name(city, lang);
    match lang {
        Language::Ru => format!("{city}: на эти даты свободного жилья нет. Выберите другие даты."),
        Language::Kk => format!("{city}: бұл күндерге бос пәтер жоқ. Басқа күндерді таңдаңыз."),
        Language::En => format!("{city}: nothing free for those dates. Please pick other dates."),
    }
}

/// The caption of an apartment's card: title, city, price per night, total, rating.
pub fn offer_card(offer: &Offer, stay: &Stay, lang: Language) -> String {
    let n = nights((stay.check_out - stay.check_in).num_days(), lang);
    let city = city_name(&offer.city, lang);
    let price = money(offer.nightly_price_kzt);
    let total = money(offer.total_kzt);
    let mut text = match lang {
        Language::Ru => format!(
            "{}\n{city}\n{price} / ночь\nИтого за {n}: {total}",
            offer.title
        ),
        Language::Kk => format!(
            "{}\n{city}\n{price} / түн\n{n} үшін барлығы: {total}",
            offer.title
        ),
        Language::En => format!(
            "{}\n{city}\n{price} / night\nTotal for {n}: {total}",
            offer.title
        ),
    };
    if let Some(r) = offer.rating {
        text.push('\n');
        text.push_str(&rating(r));
    }
    text
}

/// Under a page of results.
pub fn results_page(found: usize, page: usize, pages: usize, lang: Language) -> String {
    match lang {
        Language::Ru => format!(
            "Найдено вариантов: {found}, страница {page}/{pages}. \
             Нажмите «Забронировать» под понравившимся."
        ),
        Language::Kk => format!(
            "Табылды: {found}, {page}/{pages} бет. Ұнағанының астындағы «Брондау» батырмасын басыңыз."
        ),
        Language::En => format!(
            "Found {found}, page {page}/{pages}. Tap “Book” under the one you like."
        ),
    }
}

/// The summary before booking.
pub fn confirm_booking(stay: &Stay, offer: &Offer, lang: Language) -> String {
    let city = city_name(&offer.city, lang);
    let when = dates(stay.check_in, stay.check_out);
    let n = nights((stay.check_out - stay.check_in).num_days(), lang);
    let g = guests(stay.guests, lang);
    let total = money(offer.total_kzt);
    match lang {
        Language::Ru => format!(
            "{}, {city}\n{when} · {n}\n{g}\nИтого: {total}\n\n\
             Оплата через Kaspi; после бронирования квартира держится за вами 15 минут.",
            offer.title
        ),
        Language::Kk => format!(
            "{}, {city}\n{when} · {n}\n{g}\nБарлығы: {total}\n\n\
             Төлем Kaspi арқылы; брондағаннан кейін пәтер сізге 15 минут сақталады.",
            offer.title
        ),
        Language::En => format!(
            "{}, {city}\n{when} · {n}\n{g}\nTotal: {total}\n\n\
             You pay with Kaspi; once booked, the apartment is held for you for 15 minutes.",
            offer.title
        ),
    }
}

// ----- booking and payment -----

/// The Kaspi link is ready.
pub fn held_for_payment(amount_kzt: i64, lang: Language) -> String {
    let amount = money(amount_kzt);
    match lang {
        Language::Ru => format!(
            "Квартира за вами на 15 минут. Оплатите {amount} через Kaspi — кнопка ниже. \
             Подтверждение придёт сюда.\nВаши бронирования: /mybookings"
        ),
        Language::Kk => format!(
            "Пәтер сізге 15 минутқа сақталды. Kaspi арқылы {amount} төлеңіз — төмендегі батырма. \
             Растау осында келеді.\nБроньдарыңыз: /mybookings"
        ),
        Language::En => format!(
            "It's held for you for 15 minutes. Pay {amount} with Kaspi using the button below. \
             The confirmation will come here.\nYour bookings: /mybookings"
        ),
    }
}

/// Anything said while the payment link is out.
pub fn payment_reminder(amount_kzt: i64, lang: Language) -> String {
    let amount = money(amount_kzt);
    match lang {
        Language::Ru => format!(
            "Ждём оплату {amount} через Kaspi — кнопка ниже. Уже оплатили? Подтверждение придёт сюда.\n\
             Бронирования: /mybookings · новый поиск: /start"
        ),
        Language::Kk => format!(
            "Kaspi арқылы {amount} төлемін күтіп отырмыз — төмендегі батырма. Төлеп қойсаңыз, растау осында келеді.\n\
             Броньдар: /mybookings · жаңа іздеу: /start"
        ),
        Language::En => format!(
            "Waiting for your {amount} payment with Kaspi — button below. Already paid? The confirmation will come here.\n\
             Bookings: /mybookings · new search: /start"
        ),
    }
}

/// Someone else took the nights; `alternatives`: whether other offers follow.
pub fn dates_taken(alternatives: bool, lang: Language) -> &'static str {
    match alternatives {
        true => pick(
            lang,
            "Извините, эти даты только что забронировали. Вот что ещё свободно:",
            "Кешіріңіз, бұл күндерді жаңа ғана біреу брондап қойды. Міне, басқа бос пәтерлер:",
            "Sorry, someone has just booked these dates. Here is what else is free:",
        ),
        false => pick(
            lang,
            "Извините, эти даты только что забронировали, а других свободных вариантов нет. \
             Выберите другие даты.",
            "Кешіріңіз, бұл күндерді жаңа ғана біреу брондап қойды, басқа бос пәтер жоқ. \
             Басқа күндерді таңдаңыз.",
            "Sorry, someone has just booked these dates, and nothing else is free. \
             Please pick other dates.",
        ),
    }
}

/// The service or Kaspi is away for a moment.
pub fn try_again(lang: Language) -> &'static str {
    pick(
        lang,
        "Сервис сейчас недоступен. Попробуйте ещё раз через минуту.",
        "Қызмет қазір қолжетімсіз. Бір минуттан кейін қайталап көріңіз.",
        "The service is unavailable right now. Please try again in a minute.",
    )
}

/// The stay breaks the listing's rules.
/// The answer to every message from an account an admin blocked.
pub fn account_blocked(lang: Language) -> &'static str {
    pick(
        lang,
        "Ваш аккаунт заблокирован, поэтому бронировать через бота сейчас нельзя. \
         Если это ошибка, напишите в поддержку.",
        "Сіздің аккаунтыңыз бұғатталған, сондықтан қазір бот арқылы брондау мүмкін емес. \
         Егер бұл қате болса, қолдау қызметіне жазыңыз.",
        "Your account is blocked, so you can't book through the bot right now. \
         If you think this is a mistake, please contact support.",
    )
}

pub fn not_allowed(lang: Language) -> &'static str {
    pick(
        lang,
        "Эта квартира не принимает такое бронирование (число гостей или минимальный срок). \
         Выберите другие даты.",
        "Бұл пәтер мұндай броньды қабылдамайды (қонақ саны немесе ең аз мерзім). \
         Басқа күндерді таңдаңыз.",
        "This apartment doesn't take this stay (number of guests or minimum nights). \
         Please pick other dates.",
    )
}

// ----- bookings and cancellation -----

/// A booking status (`held`, `confirmed`, …) in words.
pub fn status_name(status: &str, lang: Language) -> &'static str {
    match status {
        "held" => pick(lang, "ждёт оплаты", "төлем күтілуде", "awaiting payment"),
        "confirmed" => pick(lang, "подтверждено", "расталды", "confirmed"),
        "checked_in" => pick(lang, "проживание", "тұрып жатырсыз", "checked in"),
        "completed" => pick(lang, "завершено", "аяқталды", "completed"),
        "cancelled" => pick(lang, "отменено", "жойылды", "cancelled"),
        "expired" => pick(lang, "не оплачено вовремя", "мерзімі өтті", "expired"),
        _ => pick(lang, "неизвестно", "белгісіз", "unknown"),
    }
}

/// Most bookings [`bookings_list`] spells out (one message).
const LIST_LIMIT: usize = 20;

/// `/mybookings`: each booking's title, dates, status and total.
pub fn bookings_list(bookings: &[BookingSummary], lang: Language) -> String {
    if bookings.is_empty() {
        return no_bookings(lang).to_string();
    }
    let mut text = pick(
        lang,
        "Ваши бронирования:",
        "Сіздің броньдарыңыз:",
        "Your bookings:",
    )
    .to_string();
    for b in bookings.iter().take(LIST_LIMIT) {
        text.push_str(&format!(
            "\n\n• {}\n{} · {} · {}",
            b.title,
            dates(b.check_in, b.check_out),
            status_name(&b.status, lang),
            money(b.total_kzt)
        ));
    }
    if bookings.len() > LIST_LIMIT {
        text.push_str(&format!("\n\n… +{}", bookings.len() - LIST_LIMIT));
    }
    text
}

pub fn no_bookings(lang: Language) -> &'static str {
    pick(
        lang,
        "У вас пока нет бронирований. Найти жильё — /start.",
        "Сізде әзірге бронь жоқ. Пәтер іздеу — /start.",
        "You have no bookings yet. Send /start to find a place.",
    )
}

pub fn choose_cancellation(lang: Language) -> &'static str {
    pick(
        lang,
        "Какое бронирование отменить?",
        "Қай броньды болдырмау керек?",
        "Which booking do you want to cancel?",
    )
}

pub fn nothing_to_cancel(lang: Language) -> &'static str {
    pick(
        lang,
        "Нет бронирований, которые можно отменить. Новый поиск — /start.",
        "Болдырмауға болатын бронь жоқ. Жаңа іздеу — /start.",
        "There is nothing to cancel. Send /start for a new search.",
    )
}

/// A booking's button in the cancellation list: the (shortened) title and the dates.
pub fn booking_label(b: &BookingSummary) -> String {
    const MAX: usize = 32;
    let title: String = if b.title.chars().count() > MAX {
        let cut: String = b.title.chars().take(MAX - 1).collect();
        format!("{}…", cut.trim_end())
    } else {
        b.title.clone()
    };
    format!("{title} · {}", short_dates(b.check_in, b.check_out))
}

pub fn confirm_cancellation(b: &BookingSummary, lang: Language) -> String {
    let when = dates(b.check_in, b.check_out);
    match lang {
        Language::Ru => format!(
            "Отменить бронирование «{}», {when}? Сумму возврата определяют правила отмены этой квартиры.",
            b.title
        ),
        Language::Kk => format!(
            "«{}», {when}: броньды болдырмау керек пе? Қайтарылатын соманы осы пәтердің болдырмау ережесі анықтайды.",
            b.title
        ),
        Language::En => format!(
            "Cancel “{}”, {when}? The listing's cancellation policy decides the refund.",
            b.title
        ),
    }
}

/// The guest said "no" to cancelling.
pub fn booking_kept(lang: Language) -> &'static str {
    pick(
        lang,
        "Хорошо, бронирование остаётся в силе.",
        "Жақсы, бронь күшінде қалады.",
        "OK, your booking stays as it is.",
    )
}

/// The booking is cancelled; `refund_kzt` goes back (0: nothing does).
pub fn cancelled(refund_kzt: i64, lang: Language) -> String {
    if refund_kzt > 0 {
        let amount = money(refund_kzt);
        match lang {
            Language::Ru => format!("Бронирование отменено. {amount} вернутся на ваш Kaspi."),
            Language::Kk => format!("Бронь жойылды. {amount} Kaspi-ге қайтарылады."),
            Language::En => format!("Booking cancelled. {amount} goes back to your Kaspi."),
        }
    } else {
        pick(
            lang,
            "Бронирование отменено. По правилам отмены деньги не возвращаются.",
            "Бронь жойылды. Болдырмау ережесі бойынша ақша қайтарылмайды.",
            "Booking cancelled. Under the cancellation policy there is no refund.",
        )
        .to_string()
    }
}

pub fn cannot_cancel(lang: Language) -> &'static str {
    pick(
        lang,
        "Это бронирование уже нельзя отменить.",
        "Бұл броньды енді болдырмау мүмкін емес.",
        "This booking can no longer be cancelled.",
    )
}

// ----- reviews -----

pub fn thanks_for_rating(lang: Language) -> &'static str {
    pick(
        lang,
        "Спасибо за оценку!",
        "Бағаңызға рахмет!",
        "Thank you for your rating!",
    )
}

pub fn cannot_review(lang: Language) -> &'static str {
    pick(
        lang,
        "Эту поездку нельзя оценить: она ещё не завершена или уже оценена.",
        "Бұл сапарды бағалау мүмкін емес: ол әлі аяқталмаған немесе бағаланып қойған.",
        "This stay can't be rated: it isn't over yet or has been rated already.",
    )
}

// ----- WhatsApp -----

/// Under a numbered menu (WhatsApp).
pub fn menu_hint(lang: Language) -> &'static str {
    pick(
        lang,
        "Ответьте номером нужного варианта.",
        "Қажетті нұсқаның нөмірін жіберіңіз.",
        "Reply with the number of your choice.",
    )
}

/// The guest typed something that is not a menu number (WhatsApp).
pub fn choose_from_menu(lang: Language) -> &'static str {
    pick(
        lang,
        "Пожалуйста, ответьте одним из номеров.",
        "Нөмірлердің бірін жіберіңіз.",
        "Please reply with one of the numbers.",
    )
}

// ----- notifications -----

fn plain(text: String) -> Reply {
    Reply {
        text,
        photo: None,
        buttons: Vec::new(),
    }
}

/// A notification from the service, as one message.
pub fn notice(n: &Notice, lang: Language) -> Reply {
    match n {
        Notice::Held {
            title,
            check_in,
            check_out,
            total_kzt,
            payment_url,
        } => {
            let when = dates(*check_in, *check_out);
            let amount = money(*total_kzt);
            let text = match lang {
                Language::Ru => format!(
                    "«{title}», {when}: квартира за вами. Оплатите {amount} через Kaspi — \
                     без оплаты бронь держится 15 минут."
                ),
                Language::Kk => format!(
                    "«{title}», {when}: пәтер сізге сақталды. Kaspi арқылы {amount} төлеңіз — \
                     төлемсіз бронь 15 минут сақталады."
                ),
                Language::En => format!(
                    "“{title}”, {when}: it's held for you. Pay {amount} with Kaspi — \
                     unpaid, the hold lasts 15 minutes."
                ),
            };
            Reply {
                text,
                photo: None,
                buttons: vec![vec![Button {
                    label: pay_button(lang).to_string(),
                    data: Choice::Pay,
                    url: Some(payment_url.clone()),
                }]],
            }
        }
        Notice::Confirmed {
            title,
            check_in,
            check_out,
        } => {
            let when = dates(*check_in, *check_out);
            plain(match lang {
                Language::Ru => format!(
                    "Оплата получена! «{title}», {when} — бронирование подтверждено. \
                     В день заезда пришлём, как попасть в квартиру."
                ),
                Language::Kk => format!(
                    "Төлем қабылданды! «{title}», {when} — бронь расталды. \
                     Кіру күні пәтерге қалай кіруге болатынын жібереміз."
                ),
                Language::En => format!(
                    "Payment received! “{title}”, {when} — your booking is confirmed. \
                     On the check-in day we'll send you how to get in."
                ),
            })
        }
        Notice::Access {
            title,
            address,
            instructions,
            door_code,
            check_in,
        } => {
            let day = date(*check_in);
            let from_hour = hour(CHECK_IN_HOUR);
            let (head, addr, code, from) = match lang {
                Language::Ru => (
                    format!("Сегодня заезд: «{title}»."),
                    "Адрес",
                    "Код двери",
                    format!("Заселение {day} с {from_hour}."),
                ),
                Language::Kk => (
                    format!("Бүгін кіру күні: «{title}»."),
                    "Мекенжайы",
                    "Есік коды",
                    format!("Кіру {day} күні {from_hour}-ден бастап."),
                ),
                Language::En => (
                    format!("Check-in day: “{title}”."),
                    "Address",
                    "Door code",
                    format!("Check-in on {day} from {from_hour}."),
                ),
            };
            let mut text = format!("{head}\n{addr}: {address}");
            if !door_code.trim().is_empty() {
                text.push_str(&format!("\n{code}: {door_code}"));
            }
            if !instructions.trim().is_empty() {
                text.push_str(&format!("\n{}", instructions.trim()));
            }
            text.push_str(&format!("\n{from}"));
            plain(text)
        }
        Notice::CheckoutReminder { title, check_out } => {
            let day = date(*check_out);
            let by = hour(CHECK_OUT_HOUR);
            plain(match lang {
                Language::Ru => format!(
                    "Сегодня ({day}) выезд из «{title}»: пожалуйста, освободите квартиру до \
                     {by}. Спасибо, что выбрали ZhilyeGO!"
                ),
                Language::Kk => format!(
                    "Бүгін ({day}) «{title}» пәтерінен шығу күні: пәтерді {by}-ге \
                     дейін босатуыңызды сұраймыз. ZhilyeGO-ны таңдағаныңызға рахмет!"
                ),
                Language::En => format!(
                    "Today ({day}) is check-out day at “{title}”: please leave by \
                     {by}. Thank you for choosing ZhilyeGO!"
                ),
            })
        }
        Notice::ReviewRequest { booking_id, title } => {
            let text = match lang {
                Language::Ru => format!("Как вам «{title}»? Оцените проживание от 1 до 5."),
                Language::Kk => format!("«{title}» ұнады ма? Тұруды 1-ден 5-ке дейін бағалаңыз."),
                Language::En => format!("How was “{title}”? Rate your stay from 1 to 5."),
            };
            let row = RATINGS
                .map(|stars| Button {
                    label: format!("{stars} ★"),
                    data: Choice::Rate {
                        booking_id: *booking_id,
                        stars,
                    },
                    url: None,
                })
                .collect();
            Reply {
                text,
                photo: None,
                buttons: vec![row],
            }
        }
        Notice::Cancelled { title, refund_kzt } => {
            let text = if *refund_kzt > 0 {
                let amount = money(*refund_kzt);
                match lang {
                    Language::Ru => {
                        format!("Бронирование «{title}» отменено. {amount} вернутся на ваш Kaspi.")
                    }
                    Language::Kk => {
                        format!("«{title}»: бронь жойылды. {amount} Kaspi-ге қайтарылады.")
                    }
                    Language::En => {
                        format!("Your booking “{title}” is cancelled. {amount} goes back to your Kaspi.")
                    }
                }
            } else {
                match lang {
                    Language::Ru => format!(
                        "Бронирование «{title}» отменено. По правилам отмены деньги не возвращаются."
                    ),
                    Language::Kk => format!(
                        "«{title}»: бронь жойылды. Болдырмау ережесі бойынша ақша қайтарылмайды."
                    ),
                    Language::En => format!(
                        "Your booking “{title}” is cancelled. Under the cancellation policy there is no refund."
                    ),
                }
            };
            plain(text)
        }
        Notice::FeedConflict {
            title,
            feed,
            check_in,
            check_out,
        } => {
            let when = dates(*check_in, *check_out);
            plain(match lang {
                Language::Ru => format!(
                    "«{title}»: в календаре «{feed}» есть бронь на {when}, но эти ночи уже \
                     заняты гостем ZhilyeGO. Мы не трогали бронь гостя — проверьте календарь \
                     «{feed}», чтобы не было двойного бронирования."
                ),
                Language::Kk => format!(
                    "«{title}»: «{feed}» күнтізбесінде {when} бронь бар, бірақ бұл түндерді \
                     ZhilyeGO қонағы алып қойған. Қонақтың броньына тиіспедік — екі рет \
                     брондалмауы үшін «{feed}» күнтізбесін тексеріңіз."
                ),
                Language::En => format!(
                    "“{title}”: the “{feed}” calendar has a booking for {when}, but a ZhilyeGO \
                     guest already has those nights. We left the guest's stay as it is — check \
                     “{feed}” so the flat is not booked twice."
                ),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    #[test]
    fn money_groups_thousands() {
        assert_eq!(money(0), "0 ₸");
        assert_eq!(money(950), "950 ₸");
        assert_eq!(money(65_000), "65 000 ₸");
        assert_eq!(money(1_234_567), "1 234 567 ₸");
        assert_eq!(money(-5_000), "-5 000 ₸");
    }

    #[test]
    fn russian_plurals() {
        assert_eq!(nights(1, Language::Ru), "1 ночь");
        assert_eq!(nights(3, Language::Ru), "3 ночи");
        assert_eq!(nights(5, Language::Ru), "5 ночей");
        assert_eq!(nights(11, Language::Ru), "11 ночей");
        assert_eq!(nights(21, Language::Ru), "21 ночь");
        assert_eq!(guests(2, Language::Ru), "2 гостя");
        assert_eq!(guests(1, Language::En), "1 guest");
        assert_eq!(guests(4, Language::Kk), "4 қонақ");
    }

    #[test]
    fn month_names() {
        assert_eq!(month_name(1, Language::Ru), "Январь");
        assert_eq!(month_name(12, Language::Kk), "Желтоқсан");
        assert_eq!(month_name(8, Language::En), "August");
        assert_eq!(month_name(0, Language::En), "");
        assert_eq!(month_name(13, Language::En), "");
    }

    #[test]
    fn statuses_are_localized() {
        for s in [
            "held",
            "confirmed",
            "checked_in",
            "completed",
            "cancelled",
            "expired",
        ] {
            assert_ne!(status_name(s, Language::Ru), status_name(s, Language::En));
            assert_ne!(status_name(s, Language::Kk), status_name(s, Language::En));
        }
        assert_eq!(status_name("held", Language::En), "awaiting payment");
    }

    #[test]
    fn help_lists_the_commands() {
        for lang in [Language::Ru, Language::Kk, Language::En] {
            for c in ["/start", "/mybookings", "/cancel", "/lang", "/help"] {
                assert!(help(lang).contains(c), "{lang:?} {c}");
            }
        }
    }

    #[test]
    fn review_request_has_five_rating_buttons() {
        let id = Uuid::from_u128(7);
        let r = notice(
            &Notice::ReviewRequest {
                booking_id: id,
                title: "Loft".into(),
            },
            Language::En,
        );
        assert_eq!(r.buttons.len(), 1);
        let row = &r.buttons[0];
        assert_eq!(row.len(), 5);
        assert_eq!(row[0].data.encode(), format!("rate:{id}:1"));
        assert_eq!(row[4].data.encode(), format!("rate:{id}:5"));
        assert!(row[4].label.contains('5') && row[4].label.contains('★'));
    }

    #[test]
    fn notices_render() {
        let d = NaiveDate::from_ymd_opt(2025, 8, 25).unwrap();
        let held = notice(
            &Notice::Held {
                title: "Loft".into(),
                check_in: d,
                check_out: d.succ_opt().unwrap(),
                total_kzt: 20_000,
                payment_url: "https://kaspi.kz/pay/1".into(),
            },
            Language::Ru,
        );
        assert!(held.text.contains("20 000 ₸"));
        assert_eq!(
            held.buttons[0][0].url.as_deref(),
            Some("https://kaspi.kz/pay/1")
        );
        assert_eq!(held.buttons[0][0].label, "Оплатить Kaspi");

        let access = notice(
            &Notice::Access {
                title: "Loft".into(),
                address: "Abay Ave 10".into(),
                instructions: "Key box by the door".into(),
                door_code: "4821".into(),
                check_in: d,
            },
            Language::En,
        );
        for part in [
            "Abay Ave 10",
            "Key box by the door",
            "4821",
            "25.08.2025",
            "14:00",
        ] {
            assert!(access.text.contains(part), "{part}: {}", access.text);
        }

        let out = notice(
            &Notice::CheckoutReminder {
                title: "Loft".into(),
                check_out: d,
            },
            Language::Kk,
        );
        assert!(out.text.contains("12:00"));

        let confirmed = notice(
            &Notice::Confirmed {
                title: "Loft".into(),
                check_in: d,
                check_out: d.succ_opt().unwrap(),
            },
            Language::En,
        );
        assert!(confirmed.text.contains("25.08.2025–26.08.2025"));

        let refund = notice(
            &Notice::Cancelled {
                title: "Loft".into(),
                refund_kzt: 15_000,
            },
            Language::En,
        );
        assert!(refund.text.contains("15 000 ₸"));
        let none = notice(
            &Notice::Cancelled {
                title: "Loft".into(),
                refund_kzt: 0,
            },
            Language::En,
        );
        assert!(none.text.contains("no refund"));
        let conflict = notice(
            &Notice::FeedConflict {
                title: "Loft".into(),
                feed: "Airbnb".into(),
                check_in: "2026-12-10".parse().unwrap(),
                check_out: "2026-12-12".parse().unwrap(),
            },
            Language::Ru,
        );
        assert!(conflict.text.contains("Airbnb") && conflict.text.contains("Loft"));
    }

    #[test]
    fn long_titles_are_shortened_on_buttons() {
        let d = NaiveDate::from_ymd_opt(2025, 8, 25).unwrap();
        let b = BookingSummary {
            booking_id: Uuid::from_u128(1),
            title: "A very long apartment title that goes on and on and on".into(),
            check_in: d,
            check_out: d.succ_opt().unwrap(),
            status: "held".into(),
            total_kzt: 1,
        };
        let label = booking_label(&b);
        assert!(label.contains('…'));
        assert!(label.ends_with("25.08–26.08"));
    }
}

// Every string a person sees, in Vietnamese (the default) and English.
//
// Static text is marked in the HTML with `data-i18n="key"` (text content) or
// `data-i18n-placeholder` / `data-i18n-title` / `data-i18n-aria-label` (attributes);
// `applyTranslations()` fills them in. Text built by scripts calls `t(key, params)` and
// re-renders on the `languagechange` event this module dispatches on `window`.

const STORAGE_KEY = 'diemcau.lang';
const LANGUAGES = ['vi', 'en'];

const STRINGS = {
  vi: {
    'app.name': 'Điểm cầu',
    'lang.toggle': 'English',
    'lang.toggleTitle': 'Switch the interface to English',

    'landing.title': 'Điểm cầu — Họp trực tuyến',
    'landing.heading': 'Họp trực tuyến tỉnh — xã',
    'landing.intro':
      'Điểm cầu trung tâm phát hình và tiếng tới mọi điểm cầu xã; mỗi điểm cầu gửi hình của hội trường về điểm cầu trung tâm.',
    'landing.meeting': 'Mã cuộc họp',
    'landing.meetingHint': 'Chữ cái không dấu, chữ số, dấu - hoặc _ (tối đa 64 ký tự)',
    'landing.name': 'Tên điểm cầu',
    'landing.namePlaceholder': 'Ví dụ: Xã Thượng Lâm',
    'landing.openStudio': 'Mở làm điểm cầu trung tâm',
    'landing.openSite': 'Mở làm điểm cầu xã',
    'landing.invalidMeeting': 'Mã cuộc họp không hợp lệ: dùng 1–64 ký tự gồm chữ cái không dấu, chữ số, - hoặc _.',
    'landing.invalidName': 'Hãy nhập tên điểm cầu (1–128 ký tự).',
    'landing.defaultStudioName': 'Điểm cầu trung tâm',

    'studio.title': 'Điểm cầu trung tâm',
    'studio.heading': 'Điểm cầu trung tâm',
    'studio.preview': 'Hình đang phát',
    'studio.sites': 'Các điểm cầu',
    'studio.noSites': 'Chưa có điểm cầu nào tham gia.',
    'studio.siteCount': '{count} điểm cầu',

    'site.title': 'Điểm cầu',
    'site.heading': 'Điểm cầu',
    'site.studio': 'Điểm cầu trung tâm',
    'site.waitingStudio': 'Đang chờ hình từ điểm cầu trung tâm…',
    'site.noStudio': 'Điểm cầu trung tâm chưa vào cuộc họp.',
    'site.ownCamera': 'Hình của điểm cầu này',
    'site.connection': 'Tình trạng kết nối',

    'tile.waitingVideo': 'Đang chờ hình…',
    'tile.unknownName': 'Điểm cầu {id}',

    'meeting.label': 'Cuộc họp: {meeting}',
    'meeting.you': 'Bạn: {name}',
    'action.leave': 'Rời cuộc họp',
    'action.rejoin': 'Vào lại',
    'action.enableSound': 'Bật âm thanh',
    'action.dismiss': 'Đóng',
    'action.home': 'Về trang đầu',

    'status.signaling': 'Máy chủ',
    'status.connection': 'Đường truyền',
    'status.media': 'Hình và tiếng',

    'signaling.idle': 'chưa kết nối',
    'signaling.connecting': 'đang kết nối…',
    'signaling.open': 'đã kết nối, đang vào phòng…',
    'signaling.joined': 'đã vào cuộc họp',
    'signaling.left': 'đã rời cuộc họp',
    'signaling.reconnecting': 'mất kết nối, thử lại sau {seconds} giây…',
    'signaling.closed': 'đã ngắt kết nối',

    'pc.none': 'chưa bắt đầu',
    'pc.new': 'chưa bắt đầu',
    'pc.connecting': 'đang kết nối…',
    'pc.connected': 'đã kết nối',
    'pc.disconnected': 'chập chờn, đang thử lại…',
    'pc.failed': 'thất bại',
    'pc.closed': 'đã đóng',

    'media.unknown': 'đang chờ máy chủ…',
    'media.connected': 'máy chủ đã nhận được',
    'media.disconnected': 'máy chủ mất tín hiệu',

    'local.camera': 'Camera và micro đang hoạt động',
    'local.audioOnly': 'Không có camera: chỉ gửi tiếng',
    'local.videoOnly': 'Không có micro: chỉ gửi hình',
    'local.none': 'Không mở được camera và micro: chỉ nhận',

    'error.title': 'Lỗi',
    'error.malformed_json': 'Máy chủ không đọc được tin nhắn (JSON sai).',
    'error.binary_not_supported': 'Máy chủ chỉ nhận tin nhắn dạng văn bản.',
    'error.unknown_type': 'Máy chủ không hiểu loại tin nhắn.',
    'error.invalid_field': 'Thông tin gửi lên không hợp lệ.',
    'error.message_too_large': 'Tin nhắn quá lớn.',
    'error.not_joined': 'Chưa vào cuộc họp.',
    'error.already_joined': 'Đã vào cuộc họp rồi.',
    'error.no_pending_offer': 'Máy chủ không chờ câu trả lời nào.',
    'error.negotiation_in_progress': 'Đang thương lượng kết nối, thử lại sau.',
    'error.invalid_sdp': 'Máy chủ không chấp nhận mô tả phiên (SDP).',
    'error.studio_taken': 'Cuộc họp này đã có điểm cầu trung tâm.',
    'error.meeting_full': 'Cuộc họp đã đủ số điểm cầu.',
    'error.internal': 'Máy chủ gặp lỗi; đang thử lại.',
    'error.unknown': 'Lỗi không rõ ({code}).',
    'error.websocket': 'Không kết nối được tới máy chủ.',
    'error.media': 'Không mở được camera hoặc micro: {message}',
    'error.webrtc': 'Lỗi kết nối hình và tiếng: {message}',
    'error.noMeeting': 'Thiếu mã cuộc họp trong địa chỉ trang.',
    'error.unsupported': 'Trình duyệt này không hỗ trợ WebRTC.',
  },
  en: {
    'app.name': 'diemcau',
    'lang.toggle': 'Tiếng Việt',
    'lang.toggleTitle': 'Chuyển giao diện sang tiếng Việt',

    'landing.title': 'diemcau — Online meetings',
    'landing.heading': 'Province to commune online meetings',
    'landing.intro':
      'The studio broadcasts its picture and sound to every commune site; each site sends its hall’s picture back to the studio.',
    'landing.meeting': 'Meeting code',
    'landing.meetingHint': 'Letters without accents, digits, - or _ (at most 64 characters)',
    'landing.name': 'Site name',
    'landing.namePlaceholder': 'For example: Xã Thượng Lâm',
    'landing.openStudio': 'Open as studio',
    'landing.openSite': 'Open as site',
    'landing.invalidMeeting': 'Invalid meeting code: use 1–64 characters of plain letters, digits, - or _.',
    'landing.invalidName': 'Enter the site name (1–128 characters).',
    'landing.defaultStudioName': 'Studio',

    'studio.title': 'Studio',
    'studio.heading': 'Studio',
    'studio.preview': 'On air',
    'studio.sites': 'Sites',
    'studio.noSites': 'No site has joined yet.',
    'studio.siteCount': '{count} sites',

    'site.title': 'Site',
    'site.heading': 'Site',
    'site.studio': 'Studio',
    'site.waitingStudio': 'Waiting for the studio’s picture…',
    'site.noStudio': 'The studio has not joined the meeting yet.',
    'site.ownCamera': 'This site’s camera',
    'site.connection': 'Connection',

    'tile.waitingVideo': 'Waiting for video…',
    'tile.unknownName': 'Site {id}',

    'meeting.label': 'Meeting: {meeting}',
    'meeting.you': 'You: {name}',
    'action.leave': 'Leave meeting',
    'action.rejoin': 'Join again',
    'action.enableSound': 'Turn sound on',
    'action.dismiss': 'Close',
    'action.home': 'Back to start',

    'status.signaling': 'Server',
    'status.connection': 'Media link',
    'status.media': 'Picture and sound',

    'signaling.idle': 'not connected',
    'signaling.connecting': 'connecting…',
    'signaling.open': 'connected, joining…',
    'signaling.joined': 'in the meeting',
    'signaling.left': 'left the meeting',
    'signaling.reconnecting': 'connection lost, retrying in {seconds} s…',
    'signaling.closed': 'disconnected',

    'pc.none': 'not started',
    'pc.new': 'not started',
    'pc.connecting': 'connecting…',
    'pc.connected': 'connected',
    'pc.disconnected': 'unstable, retrying…',
    'pc.failed': 'failed',
    'pc.closed': 'closed',

    'media.unknown': 'waiting for the server…',
    'media.connected': 'reaching the server',
    'media.disconnected': 'server lost the signal',

    'local.camera': 'Camera and microphone on',
    'local.audioOnly': 'No camera: sending sound only',
    'local.videoOnly': 'No microphone: sending picture only',
    'local.none': 'Camera and microphone unavailable: receiving only',

    'error.title': 'Error',
    'error.malformed_json': 'The server could not read a message (bad JSON).',
    'error.binary_not_supported': 'The server only reads text messages.',
    'error.unknown_type': 'The server does not know this kind of message.',
    'error.invalid_field': 'The details sent are not valid.',
    'error.message_too_large': 'The message is too large.',
    'error.not_joined': 'Not in the meeting yet.',
    'error.already_joined': 'Already in the meeting.',
    'error.no_pending_offer': 'The server was not waiting for an answer.',
    'error.negotiation_in_progress': 'A negotiation is in progress; try again later.',
    'error.invalid_sdp': 'The server refused the session description (SDP).',
    'error.studio_taken': 'This meeting already has a studio.',
    'error.meeting_full': 'The meeting is full.',
    'error.internal': 'The server failed; retrying.',
    'error.unknown': 'Unknown error ({code}).',
    'error.websocket': 'Cannot reach the server.',
    'error.media': 'Cannot open the camera or microphone: {message}',
    'error.webrtc': 'Picture and sound connection error: {message}',
    'error.noMeeting': 'The page address has no meeting code.',
    'error.unsupported': 'This browser does not support WebRTC.',
  },
};

/** The language in use: the stored choice, else Vietnamese. */
export function currentLanguage() {
  let stored = null;
  try {
    stored = localStorage.getItem(STORAGE_KEY);
  } catch {
    // Storage can be blocked (private mode, policies); the default still works.
  }
  return LANGUAGES.includes(stored) ? stored : 'vi';
}

/** Switches language, remembers it and re-renders the page. */
export function setLanguage(language) {
  if (!LANGUAGES.includes(language)) return;
  try {
    localStorage.setItem(STORAGE_KEY, language);
  } catch {
    // Not remembered, but the page still switches.
  }
  applyTranslations();
  window.dispatchEvent(new CustomEvent('languagechange', { detail: { language } }));
}

/** The text for `key` in the current language, with `{name}` placeholders filled from `params`. */
export function t(key, params = {}) {
  const language = currentLanguage();
  const text = STRINGS[language][key] ?? STRINGS.vi[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (whole, name) => (name in params ? String(params[name]) : whole));
}

/** Whether a translation exists for `key` (used to map protocol error codes). */
export function hasText(key) {
  return key in STRINGS.vi;
}

/** Fills every `data-i18n*` element under `root` and the document title. */
export function applyTranslations(root = document) {
  const language = currentLanguage();
  document.documentElement.lang = language;
  for (const element of root.querySelectorAll('[data-i18n]')) {
    element.textContent = t(element.dataset.i18n);
  }
  for (const [attribute, dataKey] of [
    ['placeholder', 'i18nPlaceholder'],
    ['title', 'i18nTitle'],
    ['aria-label', 'i18nAriaLabel'],
  ]) {
    for (const element of root.querySelectorAll(`[data-i18n-${attribute}]`)) {
      element.setAttribute(attribute, t(element.dataset[dataKey]));
    }
  }
  const titleKey = document.querySelector('title')?.dataset.i18n;
  if (titleKey) document.title = t(titleKey);
}

/** Makes `button` switch between Vietnamese and English. */
export function installLanguageToggle(button) {
  button.dataset.i18n = 'lang.toggle';
  button.dataset.i18nTitle = 'lang.toggleTitle';
  button.addEventListener('click', () => {
    setLanguage(currentLanguage() === 'vi' ? 'en' : 'vi');
  });
  applyTranslations();
}

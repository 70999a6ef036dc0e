//! The terminal in raw mode, on the alternate screen, with the mouse: set
//! up on entry, and put back as it was on every way out (drop, panic; a
//! signal ends the loop, then drop).

use std::io::{self, Stdout};

use crossterm::{
    cursor::{Hide, Show},
    event::{DisableMouseCapture, EnableMouseCapture},
    execute,
    terminal::{EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode},
};
use ratatui::{Frame, backend::CrosstermBackend, layout::Rect};

pub struct Terminal {
    inner: ratatui::Terminal<CrosstermBackend<Stdout>>,
}

/// Puts the terminal back; safe to call more than once.
fn restore() {
    let _ = disable_raw_mode();
    let _ = execute!(
        io::stdout(),
        DisableMouseCapture,
        LeaveAlternateScreen,
        Show
    );
}

impl Terminal {
    pub fn enter() -> io::Result<Terminal> {
        // A panic anywhere restores the terminal before its message is
        // printed, so the message is readable and the shell usable.
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            previous(info);
        }));
        enable_raw_mode()?;
        if let Err(e) = execute!(io::stdout(), EnterAlternateScreen, EnableMouseCapture, Hide) {
            restore();
            return Err(e);
        }
        match ratatui::Terminal::new(CrosstermBackend::new(io::stdout())) {
            Ok(inner) => Ok(Terminal { inner }),
            Err(e) => {
                restore();
                Err(e)
            }
        }
    }

    pub fn size(&self) -> io::Result<Rect> {
        let s = self.inner.size()?;
        Ok(Rect::new(0, 0, s.width, s.height))
    }

    pub fn draw(&mut self, render: impl FnOnce(&mut Frame<'_>)) -> io::Result<()> {
        self.inner.draw(render).map(|_| ())
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        restore();
    }
}
